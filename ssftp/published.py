"""The files this process's own SFTP server has just published whole, so that the staging watcher
of the same process (``ssftp up``) scans them without waiting for them to settle.

The watcher cannot tell who wrote a file: one written in place by another writer (a ``cp``
onto the share) counts as complete once it has not changed for ``scanning.stableSeconds``
(ssftp.scan.readiness). An upload is complete the moment its name appears (the server renames
it into place after the client's close), and that wait was most of the time from the close to
``clean/``. A file is known by its stamp (inode, size, mtime), taken before its publish: one
changed since (a SETSTAT of its times, another writer) is no longer the one published, and
waits like any other file. Entries go after ``SECONDS`` (the watcher asks within moments) and
beyond ``LIMIT``, the oldest first. A worker in a process of its own (``ssftp worker``) finds
nothing here, and every file waits as before.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from ssftp.expiring import Expiring
from ssftp.file_stamp import FileStamp

SECONDS = 10.0
LIMIT = 1024


class PublishedWhole:
    """Stamps of files published whole, shared by the sessions' threads and the worker's."""

    def __init__(self, seconds: float = SECONDS, limit: int = LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stamps: Expiring[FileStamp, bool] = Expiring(seconds, limit, clock)

    def remember(self, stamp: FileStamp) -> None:
        self._stamps.put(stamp, True)

    def __contains__(self, stamp: FileStamp) -> bool:
        return self._stamps.get(stamp) is not None


@functools.cache
def published_whole() -> PublishedWhole:
    """The process's one registry: the server and the watcher run on threads of one process."""
    return PublishedWhole()
