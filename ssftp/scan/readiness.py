"""When a staged file is complete enough to scan.

ssftp's own writers (the SFTP server, downloaders) rename a finished temp file into place, so
their files are complete when they appear. Other writers (a ``cp`` onto the share, a sync
tool) write in place; their files count as complete once size, mtime and inode have not
changed for ``stable_seconds``. A watcher cannot tell who wrote a file, so every file gets
that check, but for those the SFTP server of the same process has just published whole,
unchanged since (ssftp.published): they wait only ``rename_grace_seconds`` (when that is the
shorter). (A writer that pauses longer than that mid-file is caught later by the scanner: a
file that changes during its scan is never passed on.)

Why a published file waits at all: a client that uploads to a name of its own choosing renames
it after its close (server.renames), and the file must be scanned under its final name only.
That rename arrives a round trip after the publish (the close reply to the client, the rename
back), a few milliseconds on a LAN and up to some hundred over the internet; scanned at once,
the file would be claimed first. A renamed file keeps its stamp (inode, size, mtime), so at
its new name it is still one published whole, and waits the grace once more from there.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ssftp.file_stamp import FileStamp
from ssftp.published import published_whole

# How the tracker looks at a file; tests pass a dict's ``get`` to change "files" without disk.
StampOf = Callable[[Path], FileStamp | None]
# Whether a file, as it is now, was published whole by a writer of this process.
Whole = Callable[[FileStamp], bool]


def regular_file_stamp(path: Path) -> FileStamp | None:
    """The stamp of a regular file, None when it is gone or not a regular file: a directory
    or a symlink is never scanned as a file."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileStamp.of(info)


@dataclass
class _Seen:
    stamp: FileStamp
    since: float
    whole: bool


class ReadinessTracker:
    def __init__(self, stable_seconds: float, stamp_of: StampOf = regular_file_stamp,
                 whole: Whole | None = None, rename_grace_seconds: float = 0.0) -> None:
        self.stable_seconds = stable_seconds
        self.rename_grace_seconds = rename_grace_seconds
        self._stamp_of = stamp_of
        self._whole = published_whole().__contains__ if whole is None else whole
        self._seen: dict[Path, _Seen] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, path: Path) -> bool:
        return path in self._seen

    def saw(self, path: Path, now: float) -> None:
        """A change was reported for ``path`` (created, written, renamed into place)."""
        stamp = self._stamp_of(path)
        if stamp is None:
            self._seen.pop(path, None)
        else:
            self._seen[path] = _Seen(stamp, now, self._whole(stamp))

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def ready(self, now: float) -> list[Path]:
        """Files unchanged for ``stable_seconds`` (published whole: for the rename grace, see
        the module's doc); they are handed out once."""
        ready = []
        whole_wait = min(self.stable_seconds, self.rename_grace_seconds)
        for path, seen in list(self._seen.items()):
            if now - seen.since < (whole_wait if seen.whole else self.stable_seconds):
                continue
            stamp = self._stamp_of(path)
            if stamp is None:
                del self._seen[path]
            elif stamp != seen.stamp:
                self._seen[path] = _Seen(stamp, now, self._whole(stamp))
            else:
                del self._seen[path]
                ready.append(path)
        return ready
