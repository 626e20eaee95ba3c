"""What ``stat`` can tell about a file's identity and content, compared to notice a change,
and the sha256 of its bytes, the name a file goes by in the audit log and Prefect's events.

One definition for every place that asks "is this still the file I saw?": the staging
watcher (has a file stopped changing?), the scanner (did it change while clamd read it?) and
the uploader (is the file in clean/ still the one that was delivered?).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FileStamp:
    """Which file (inode), holding what (size, modification time in ns).

    A replaced file has another inode; a rewritten one another size or mtime. The change time
    is left out on purpose: renames and new hard links change it without touching the bytes,
    and the stamp outlives both (it is stored for deliveries). The scanner, which must also
    catch a writer that puts an old mtime back, compares ``st_ctime_ns`` beside it.
    """

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileStamp:
        return cls(info.st_ino, info.st_size, info.st_mtime_ns)


_READ_CHUNK = 1 << 20


def sha256_of(fd: int) -> tuple[str, int]:
    """The sha256 (hex) of an open file's bytes from the start, and how many there were."""
    digest = hashlib.sha256()
    size = 0
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, _READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_if_unchanged(path: os.PathLike[str] | str, stamp: FileStamp) -> str | None:
    """The sha256 of the file at ``path`` if it is still the one ``stamp`` describes (and not a
    link or a special file put in its place), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if FileStamp.of(os.fstat(fd)) != stamp:
            return None
        sha256, size = sha256_of(fd)
        return sha256 if size == stamp.size and FileStamp.of(os.fstat(fd)) == stamp else None
    finally:
        os.close(fd)
