"""The files each account published in the last minute, so that times set by path right after
an upload apply to them.

Clients that keep mtimes set them after the close: asyncssh ``put(preserve=True)``, lftp and
sshfs ``cp -p`` send SETSTAT by path, and rclone sends it on whichever of its pooled
connections is free (often not the one that uploaded). An account without ``chtimes`` may
still set the times (and mode) of its own upload, as it may on the open handle (``put -p``):
for ``RECENT_SECONDS`` after the close, in any of the account's sessions in this process.
Not longer: a client sets times within moments of the close, and a longer window would let
the account change a file long handed on.

The scanner may claim the file in between (a rename into staging's claims, out of the
account's home, then on to ``clean/`` or ``quarantine/``, renames on one filesystem). What is
kept is therefore an ``O_PATH`` descriptor of the published file itself: the times go to the
very inode the account wrote wherever it has moved, never to whatever now has its name. A
file that was copied across filesystems meanwhile has lost them (the copy is made before the
SETSTAT arrives); the client was answered OK. At most ``RECENT_LIMIT`` are kept (the oldest
go first), a few descriptors from the process's reserve (server.descriptors).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RECENT_SECONDS = 60.0
RECENT_LIMIT = 32

Identity = tuple[int, int]  # (st_dev, st_ino)


@dataclass(frozen=True)
class _Upload:
    fd: int  # O_PATH, of the inode published
    identity: Identity
    expires: float


class RecentUploads:
    """The recent uploads of every account, shared by the sessions' threads (hence the lock;
    no filesystem call is made while it is held)."""

    def __init__(self, seconds: float = RECENT_SECONDS, limit: int = RECENT_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._uploads: OrderedDict[tuple[str, Path], _Upload] = OrderedDict()

    def remember(self, username: str, host: Path, fd: int) -> None:
        """Keep ``fd`` (an ``O_PATH`` descriptor of the file just published at ``host``; owned
        from now on) for a while."""
        info = os.fstat(fd)
        upload = _Upload(fd, (info.st_dev, info.st_ino), self._clock() + self._seconds)
        with self._lock:
            dropped = self._expired()
            old = self._uploads.pop((username, host), None)
            if old is not None:
                dropped.append(old)
            self._uploads[(username, host)] = upload
            while len(self._uploads) > self._limit:
                dropped.append(self._uploads.popitem(last=False)[1])
        _close(dropped)

    def open(self, username: str, host: Path, here: Identity | None) -> int | None:
        """A new descriptor (the caller closes it) of the account's recent upload at ``host``,
        if the file there now (``here``) is that upload, or nothing is there (claimed by the
        scanner since); None otherwise."""
        with self._lock:
            dropped = self._expired()
            upload = self._uploads.get((username, host))
            fd = None
            if upload is not None and here in (None, upload.identity):
                fd = os.dup(upload.fd)
        _close(dropped)
        return fd

    def _expired(self) -> list[_Upload]:
        """Take out those past their time (the oldest come first); call with the lock held."""
        now = self._clock()
        dropped: list[_Upload] = []
        while self._uploads and next(iter(self._uploads.values())).expires <= now:
            dropped.append(self._uploads.popitem(last=False)[1])
        return dropped


def _close(uploads: list[_Upload]) -> None:
    for upload in uploads:
        os.close(upload.fd)


@functools.cache
def recent_uploads() -> RecentUploads:
    """The one registry of the process: rclone's SETSTAT may come on another connection."""
    return RecentUploads()
