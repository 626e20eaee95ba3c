"""The true type of a file, from its content: the MIME type libmagic gives its first bytes.

libmagic (through python-magic) is the ``file`` command's engine: its database, kept by Debian
with security updates, knows thousands of formats and tells text from binary, which an allow
list such as ``text/*`` needs. The pure-Python detectors know a few hundred magic numbers and
no text at all. Only the first :data:`SNIFF_BYTES` are read, with ``pread`` on the descriptor
that is hashed and scanned, so the file's offset is untouched and the type is that of exactly
those bytes.
"""

from __future__ import annotations

import os
import threading

import magic

# libmagic looks no further than this into a file by default.
SNIFF_BYTES = 1 << 20
# "what libmagic could not name": a type no allow list admits by accident.
UNKNOWN = "application/octet-stream"

_local = threading.local()


def _detector() -> magic.Magic:
    """One libmagic handle per thread: a handle is not safe to share, and python-magic's own
    lock would make the scan threads take turns."""
    detector: magic.Magic | None = getattr(_local, "detector", None)
    if detector is None:
        detector = _local.detector = magic.Magic(mime=True)
    return detector


def file_type(fd: int) -> str:
    """The MIME type of the file open at ``fd`` (``text/csv``, ``application/x-executable``),
    lower case; :data:`UNKNOWN` when libmagic cannot tell. Raises OSError when it cannot be read."""
    head = os.pread(fd, SNIFF_BYTES, 0)
    try:
        found = _detector().from_buffer(head)
    except magic.MagicException:
        return UNKNOWN
    return found.split(";")[0].strip().lower() or UNKNOWN
