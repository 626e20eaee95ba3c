"""The true type of a file, from its content: the MIME type libmagic gives its first bytes.

libmagic (through python-magic) is the ``file`` command's engine: its database, kept by Debian
with security updates, knows thousands of formats and tells text from binary, which an allow
list such as ``text/*`` needs. The pure-Python detectors know a few hundred magic numbers and
no text at all. Only the first :data:`SNIFF_BYTES` are read, with ``pread`` on the descriptor
that is hashed and scanned, so the file's offset is untouched and the type is that of exactly
those bytes.

python-magic is imported on the first use, not with this module: without libmagic on the
machine, only the files of owners with a type policy are affected, as errors (retried, never
clean) that name what is missing, instead of every process failing at its start.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import magic

# libmagic looks no further than this into a file by default.
SNIFF_BYTES = 1 << 20
# "what libmagic could not name": a type no allow list admits by accident.
UNKNOWN = "application/octet-stream"

_local = threading.local()


def _magic() -> ModuleType:
    """python-magic; OSError when libmagic is missing (python-magic raises ImportError)."""
    try:
        import magic
    except ImportError as exc:
        raise OSError(f"cannot judge file types: libmagic is missing ({exc}); install it "
                      "(Debian: libmagic1)") from None
    return magic


def _detector() -> magic.Magic:
    """One libmagic handle per thread: a handle is not safe to share, and python-magic's own
    lock would make the scan threads take turns."""
    detector: magic.Magic | None = getattr(_local, "detector", None)
    if detector is None:
        detector = _local.detector = _magic().Magic(mime=True)
    return detector


def file_type(fd: int) -> str:
    """The MIME type of the file open at ``fd`` (``text/csv``, ``application/x-executable``),
    lower case; :data:`UNKNOWN` when libmagic cannot tell. Raises OSError when it cannot be read,
    or libmagic is missing."""
    head = os.pread(fd, SNIFF_BYTES, 0)
    detector = _detector()
    try:
        found: str = detector.from_buffer(head)
    except _magic().MagicException:
        return UNKNOWN
    return found.split(";")[0].strip().lower() or UNKNOWN
