"""The files each account published in the last minute, so that times set by path right after
an upload apply to them.

Clients that keep mtimes set them after the close: asyncssh ``put(preserve=True)``, lftp and
sshfs ``cp -p`` send SETSTAT by path, and rclone sends it on whichever of its pooled
connections is free (often not the one that uploaded). An account without ``chtimes`` may
still set the times (and mode) of its own upload, as it may on the open handle (``put -p``):
for ``RECENT_SECONDS`` after the close, in any of the account's sessions in this process.
Not longer: a client sets times within moments of the close, and a longer window would let
the account change a file long handed on.

Only while the file is still at its published name, and by that name: what is kept is the
identity (device and inode) of the file published there, and a SETSTAT applies when the name
holds that file, through the name in its verified directory (server.sftp_session). Once the
scanner has claimed the file (renamed it out of the account's home) the name is gone, and the
client is told so (no such file). Before, the times went to the kept inode wherever it had
moved: a client repeating SETSTAT changed the claimed file during its scan, and the scanner,
which passes on only a file that did not change while it was scanned, retried it for ever.
At most ``RECENT_LIMIT`` are kept (the oldest go first).
"""

from __future__ import annotations

import functools
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
    identity: Identity
    expires: float


class RecentUploads:
    """The recent uploads of every account, shared by the sessions' threads (hence the lock)."""

    def __init__(self, seconds: float = RECENT_SECONDS, limit: int = RECENT_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._uploads: OrderedDict[tuple[str, Path], _Upload] = OrderedDict()

    def remember(self, username: str, host: Path, identity: Identity) -> None:
        """Keep the identity of the file just published at ``host`` for a while."""
        upload = _Upload(identity, self._clock() + self._seconds)
        with self._lock:
            self._forget_expired()
            self._uploads.pop((username, host), None)
            self._uploads[(username, host)] = upload
            while len(self._uploads) > self._limit:
                self._uploads.popitem(last=False)

    def identity(self, username: str, host: Path) -> Identity | None:
        """The identity of the account's recent upload at ``host``, if there is one."""
        with self._lock:
            self._forget_expired()
            upload = self._uploads.get((username, host))
            return None if upload is None else upload.identity

    def _forget_expired(self) -> None:
        """Take out those past their time (the oldest come first); call with the lock held."""
        now = self._clock()
        while self._uploads and next(iter(self._uploads.values())).expires <= now:
            self._uploads.popitem(last=False)


@functools.cache
def recent_uploads() -> RecentUploads:
    """The one registry of the process: rclone's SETSTAT may come on another connection."""
    return RecentUploads()
