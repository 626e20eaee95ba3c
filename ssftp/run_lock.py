"""One run at a time of a downloader, an uploader or a rescan, across processes on this machine.

Two runs of one downloader would fetch the same files twice (and hand them on twice); two runs
of one uploader would deliver the same file twice; two rescans would scan every handed-on file
twice over. Schedules can overlap when a run is slow, and a run can be started by hand, so each
run takes an exclusive ``flock`` on ``system/locks/<kind>-<name>.lock``. The kernel drops it
when the process dies, so a crashed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_run(system: Path, kind: str, name: str) -> Iterator[bool]:
    """Yields True while this process holds the lock, False when another run holds it."""
    directory = system / "locks"
    directory.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(directory / f"{kind}-{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
