"""The files each account published (and the directories it created) in the last minute, so
that times set by path right after an upload apply to them.

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
SETSTAT changes nothing and is answered OK (server.sftp_session says why). Before, the times
went to the kept inode wherever it had moved: a client repeating SETSTAT changed the claimed
file during its scan, and the scanner, which passes on only a file that did not change while
it was scanned, retried it for ever.
A directory's times come once its files are in (``sftp put -Rp``, Midnight Commander), so
``RECENT_LIMIT`` holds a directory's worth of uploads: beyond it, or after a minute, the
oldest go first, and the directory's SETSTAT then needs ``chtimes``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from ssftp.expiring import Expiring

RECENT_SECONDS = 60.0
RECENT_LIMIT = 1024

Identity = tuple[int, int]  # (st_dev, st_ino)


class RecentUploads:
    """The recent uploads of every account, shared by the sessions' threads."""

    def __init__(self, seconds: float = RECENT_SECONDS, limit: int = RECENT_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._uploads: Expiring[tuple[str, Path], Identity] = Expiring(seconds, limit, clock)

    def remember(self, username: str, host: Path, identity: Identity) -> None:
        """Keep the identity of the file just published at ``host`` for a while."""
        self._uploads.put((username, host), identity)

    def identity(self, username: str, host: Path) -> Identity | None:
        """The identity of the account's recent upload at ``host``, if there is one."""
        return self._uploads.get((username, host))


@functools.cache
def recent_uploads() -> RecentUploads:
    """The one registry of the process: rclone's SETSTAT may come on another connection."""
    return RecentUploads()
