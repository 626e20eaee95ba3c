"""The verdict in the close reply of an upload (``scanning.verdictOnClose``): the partner's
client prints "infected: <signature>" or "unscannable: <reason>" instead of a quiet success.

This is only what the partner is told. The file's safety does not depend on it: it is in
staging or claimed until scanned, as without the option. The server still never asks clamd or
a flow; it follows the very inode it published (an ``O_PATH`` descriptor taken before the
rename) through the scanner's renames, and reads where it went:

- below ``clean/``: OK, as today;
- below ``quarantine/``: the ``<name>.verdict.json`` beside it (ssftp.scan.router), if
  that record names this place (``destination``) and this size (when it has one), says why:
  infected or unscannable. The record is written before the file moves there and reserves
  the name, so a record that matches is this file's; one that does not, or cannot be read,
  gives only "quarantined", never another file's infection;
- anywhere else (staging, a claim): not decided yet, looked at again until the time is up,
  then OK (the scanner is down, or clamd is, or the file waits its turn).

The descriptor's name is where the file is only while that name exists: a hard link that
replaces the old name (an upload published without overwrite, a claim released back to
staging after a failed scan) leaves it naming nothing. The file is then looked for where it
was published (it is there, the same inode), and that name is followed instead: at once after
the publish (if the scanner claimed the file in the microseconds between, it is not found,
and the close answers OK when the time is up), and at each look (a claim released). A file
the scanner copied across filesystems has no name left at all (the copy is another inode):
its fate cannot be told without hashing it, so the answer is OK at once (its record, if any,
might be of another upload of the same name).

Waiting costs no thread: the close handler awaits on the event loop between looks, and each
look is one short trip to the session's own thread (server.off_loop), which is idle anyway
(asyncssh handles a session's requests one at a time). Looks start 50 ms apart and double to
half a second: a quick scan is told within moments, a long wait costs two trips a second. A
wait holds one descriptor, counted as a handle in the process's budget (server.descriptors);
without room in it the close answers at once, as without the option. Polling, not inotify:
every claim directory would need a watch, set up and taken down with each claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from server.off_loop import SessionThread, run_off_loop
from ssftp.layout import DataLayout
from ssftp.logs import one_line
from ssftp.moves import proc_path
from ssftp.retry_schedule import backoff_delay
from ssftp.scan.results import Area
from ssftp.scan.router import record_path
from ssftp.scan.verdict import VerdictKind

FIRST_LOOK_SECONDS = 0.05
LOOK_MAX_SECONDS = 0.5
MESSAGE_LIMIT = 200  # characters: one line of the partner's terminal, or two
RECORD_LIMIT = 1 << 16  # a verdict record is some 600 bytes; more is not one


@dataclass(frozen=True)
class Destinations:
    """Where the scanner puts files, as the kernel names them (symlinks resolved): what the
    descriptor's ``/proc/self/fd`` link is compared with."""

    clean: Path
    quarantine: Path

    @classmethod
    def of(cls, layout: DataLayout) -> Destinations:
        return cls(Path(os.path.realpath(layout.clean)),
                   Path(os.path.realpath(layout.quarantine)))


@dataclass(frozen=True)
class VerdictWatch:
    """What the sessions of a gateway need to tell verdicts: where files go, and the configured
    wait (``None``: off), asked at each close so that a reload applies to the next one."""

    destinations: Destinations
    seconds: Callable[[], float | None]


@dataclass(frozen=True)
class Told:
    """A final answer: ``message`` for SSH_FX_FAILURE, or None for OK."""

    message: str | None


def shown(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` safe for a terminal (``one_line``) and at most ``limit`` characters: a
    signature or a reason comes from clamd, a name from the partner."""
    line = one_line(text)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def verdict_message(record: object, destination: str, size: int) -> str | None:
    """What the partner is told about the file now at ``destination`` (relative to the data
    root, as records name it) of ``size`` bytes, when ``record`` is its verdict record; None
    when it is not (another file's, or no record at all). A record without a size is of a
    file the scanner did not read (several hard links, not a regular file)."""
    if (not isinstance(record, Mapping) or record.get("destination") != destination
            or record.get("size") not in (size, None)):
        return None
    verdict = record.get("verdict")
    if verdict == VerdictKind.INFECTED:
        why = record.get("signature")
    elif verdict == VerdictKind.UNSCANNABLE:
        why = record.get("detail")
    else:
        return None
    return shown(f"{verdict}: {why if isinstance(why, str) and why else 'no detail'}")


def _read_record(path: Path) -> object:
    """The verdict record at ``path``, or None when it cannot be read as one."""
    try:
        with path.open("rb") as file:
            return json.loads(file.read(RECORD_LIMIT + 1)[:RECORD_LIMIT])
    except (OSError, ValueError):
        return None


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _names(path: Path, info: os.stat_result) -> bool:
    """Whether ``path`` names the file ``info`` is of now (a descriptor's link to a removed
    name reads "<name> (deleted)", which names nothing, or another file)."""
    try:
        return _identity(os.lstat(path)) == _identity(info)
    except OSError:
        return False


class PublishedFile:
    """The inode an upload published, followed to where the scanner sends it.

    Used in the session's thread only, one call at a time (server.off_loop)."""

    def __init__(self, fd: int, published: Path, destinations: Destinations) -> None:
        self._fd = fd  # O_PATH, owned
        self._published = published
        self._destinations = destinations

    @classmethod
    def just_published(cls, fd: int, published: Path, destinations: Destinations) -> PublishedFile:
        """Follow ``fd`` (taken before the file was published at ``published``; owned from now
        on), or the published name if ``fd``'s name was removed by a publish that linked it
        (without overwrite). Called at once after the publish, before the scanner claims it."""
        upload = cls(fd, published, destinations)
        # A look finds it; what it tells is told again by the next. Never raises: the upload
        # is published, and a look that fails now fails again later, answering OK.
        with contextlib.suppress(OSError):
            upload.look()
        return upload

    def look(self) -> Told | None:
        """The answer, when where the file is now decides it; None while it waits."""
        info = os.fstat(self._fd)
        if info.st_nlink == 0:
            return Told(None)  # copied across filesystems (or removed): see the module
        here = Path(os.readlink(proc_path(self._fd)))
        if not _names(here, info):
            self._find_at_published(info)
            return None
        if here.is_relative_to(self._destinations.clean):
            return Told(None)
        if here.is_relative_to(self._destinations.quarantine):
            destination = Path(Area.QUARANTINE, here.relative_to(self._destinations.quarantine))
            record = _read_record(record_path(here))
            return Told(verdict_message(record, destination.as_posix(), info.st_size)
                        or "quarantined")
        return None

    def _find_at_published(self, info: os.stat_result) -> None:
        """Follow the published name from now on, if it holds this very file."""
        try:
            fd = os.open(self._published, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return
        if _identity(os.fstat(fd)) == _identity(info):
            fd, self._fd = self._fd, fd
        os.close(fd)

    def close(self) -> None:
        os.close(self._fd)


async def verdict_at_close(executor: SessionThread, published: PublishedFile, seconds: float,
                           gone: Callable[[], bool]) -> str | None:
    """The failure message for the close reply, or None for OK: once where the file went
    decides it, or (None) after ``seconds`` or once the client has ``gone``. A look
    that fails (an I/O error) answers OK too: the upload was published, nothing wrong is told.

    ``published`` is closed at the end, in the session's thread: a look is never in flight
    then, so its descriptor cannot be closed under it. (When the server stops mid-wait, the
    task is cancelled and the descriptor goes with the process.)"""
    try:
        message = await _wait(executor, published, time.monotonic() + seconds, gone)
    except OSError:
        message = None
    await run_off_loop(executor, published.close)
    return message


async def _wait(executor: SessionThread, published: PublishedFile, deadline: float,
                gone: Callable[[], bool]) -> str | None:
    looks = 0
    while (told := await run_off_loop(executor, published.look)) is None:
        looks += 1
        left = deadline - time.monotonic()
        if left <= 0 or gone():
            return None
        await asyncio.sleep(min(left, backoff_delay(looks, FIRST_LOOK_SECONDS,
                                                     LOOK_MAX_SECONDS)))
    return told.message
