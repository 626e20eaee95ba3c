"""What changes below a directory (staging, the config file's), from the kernel's inotify, by
any name.

watchfiles, used before, turns every path into text in its Rust core and stops for good at the
first name that is not UTF-8 (``WatchfilesRustInternalError: Unable to decode path``). Such
names are everyday bytes from other writers and remote servers, and inotify reports even the
opening of a sub-directory, so one such directory anywhere in staging stopped the watch at
every start, and the scan worker with it. Here the kernel's bytes are decoded the way Python
decodes file names (``os.fsdecode``: undecodable bytes become surrogates and back), so every
name any writer can make is reported, and the path opens the same file.

The kernel watches directories, not trees: each directory gets a watch when it is found (at
start, or created or moved in) and loses it when it is moved away (or removed). Files that
arrive in a new directory before its watch raise no events of their own: the directory is
reported instead (:attr:`Kind.DIRECTORY`), for the caller to walk. When the watch can no longer
see everything (the kernel's queue overflowed, a directory could not be watched: the
``max_user_watches`` limit, a directory it may not read) it raises
:class:`~ssftp.errors.WatchIncompleteError`, and the caller looks for itself instead.
Directories the caller skips are not watched: ssftp's own in staging (claims, partials), where
nothing is ever a file to scan, or every one below the config file's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from asyncinotify import Event, InitFlags, Inotify, Mask

from ssftp.errors import WatchIncompleteError
from ssftp.logs import APP, log_event

logger = logging.getLogger(APP)

# Files: created (written in place), closed after writing, renamed in or out, removed.
# Directories report the same events, with ISDIR.
_EVENTS = (Mask.CREATE | Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE
           | Mask.ONLYDIR | Mask.DONT_FOLLOW)
_ARRIVED = Mask.CREATE | Mask.MOVED_TO
_LEFT = Mask.DELETE | Mask.MOVED_FROM
# Events read per system call: a thousand uploads renamed into place are a thousand events.
_EVENTS_PER_READ = 256
# A directory that vanished, or became something else, before it was watched: nothing to watch.
_GONE = (errno.ENOENT, errno.ENOTDIR)


class Kind(Enum):
    CHANGED = "changed"  # a file appeared or was written
    DELETED = "deleted"  # a file was removed or renamed away
    DIRECTORY = "directory"  # a directory arrived: walk it, its files raised no events


@dataclass(frozen=True)
class Change:
    kind: Kind
    path: Path


class TreeWatch:
    """The changes below ``root``. Directories for whose name ``skip`` is true are not
    watched. Raises OSError when the kernel refuses an inotify instance."""

    def __init__(self, root: Path, skip: Callable[[str], bool]) -> None:
        self.root = root
        self._skip = skip
        # asyncinotify's default flags name O_CLOEXEC twice (its NONBLOCK is O_CLOEXEC).
        self._inotify = Inotify(InitFlags(os.O_CLOEXEC | os.O_NONBLOCK),
                                cache_size=_EVENTS_PER_READ)

    def close(self) -> None:
        self._inotify.close()

    def start(self) -> None:
        """Watch every directory of the tree as it is now; a change from here on is reported
        by :meth:`changes`. Raises WatchIncompleteError."""
        self._watch_tree(self.root)

    async def changes(self) -> AsyncIterator[Change]:
        """Each change as it happens (after :meth:`start`), for ever.

        Raises WatchIncompleteError."""
        while True:
            event = await self._inotify.get()
            for change in self._changes_of(event):
                yield change

    def _changes_of(self, event: Event) -> list[Change]:
        if Mask.Q_OVERFLOW in event.mask:
            raise WatchIncompleteError("the kernel's queue of events overflowed")
        watch, path = event.watch, event.path
        if event.name is None or watch is None or path is None:
            if Mask.IGNORED in event.mask and watch is not None and watch.path == self.root:
                raise WatchIncompleteError(f"{self.root} was removed or moved away")
            return []  # about a watched directory itself: its parent reported it
        if Mask.ISDIR not in event.mask:
            return [Change(Kind.DELETED if event.mask & _LEFT else Kind.CHANGED, path)]
        if self._skip(path.name):
            return []
        if event.mask & _ARRIVED:
            self._watch_tree(path)
            return [Change(Kind.DIRECTORY, path)]
        if Mask.MOVED_FROM in event.mask:
            self._unwatch_tree(path)
        return []

    def _watch_tree(self, top: Path) -> None:
        """Watch ``top`` and every directory below it (symlinks are not followed)."""
        pending = [top]
        while pending:
            directory = pending.pop()
            try:
                self._inotify.add_watch(directory, _EVENTS)
                with os.scandir(directory) as entries:
                    pending += [Path(entry.path) for entry in entries
                                if not self._skip(entry.name)
                                and entry.is_dir(follow_symlinks=False)]
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise WatchIncompleteError(
                        f"{directory} cannot be watched: {exc.strerror or exc}") from None

    def _unwatch_tree(self, top: Path) -> None:
        """A directory moved away: its watches would report changes under its old path."""
        for watch in self._inotify.watches:
            if watch.path == top or top in watch.path.parents:
                with contextlib.suppress(OSError):  # removed meanwhile: already unwatched
                    self._inotify.rm_watch(watch)


async def keep_watching(new_watch: Callable[[], TreeWatch], on_change: Callable[[Change], None],
                        on_watching: Callable[[bool], None], what: str, instead: str,
                        every_seconds: float, rewatch_seconds: float) -> None:
    """Report every change to ``on_change``, for ever, from a watch that is set up again when
    it fails: whatever the reason, it is no reason to stop.

    ``on_watching(True)`` follows each new watch (a change made before it was set up is not
    reported: the caller looks for itself once), ``on_watching(False)`` each failure (the
    caller looks for itself every ``every_seconds`` until the next watch, ``rewatch_seconds``
    later). A failure is logged once (``<what> watch failed; <instead>``), however often it
    repeats, and the end of it once (``<what> watch resumed``)."""
    failure = ""
    while True:
        try:
            watch = new_watch()
            try:
                watch.start()
                on_watching(True)
                if failure:
                    log_event(logger, f"{what} watch resumed")
                    failure = ""
                async for change in watch.changes():
                    on_change(change)
            finally:
                watch.close()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if reason != failure:
                log_event(logger, f"{what} watch failed; {instead}", logging.ERROR,
                          error=reason, every_seconds=every_seconds)
            failure = reason
        on_watching(False)
        await asyncio.sleep(rewatch_seconds)
