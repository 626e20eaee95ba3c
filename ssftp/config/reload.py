"""Hot reload: the current good config, swapped whole when the file changes and is valid.

The parent directory is watched rather than the file (inotify, :mod:`ssftp.tree_watch`), so
every way of changing a file works: written in place, written elsewhere and renamed over it
(editors), or a symlinked directory swapped under it (Kubernetes ConfigMaps).
An invalid change is logged with its reasons and the last good config stays in force. The
watcher reads the file in a thread and swaps the new config in on its loop (:meth:`watch`).
:meth:`ConfigStore.ask` makes it read the file now, changed or not (SIGHUP: systemd's
``ExecReload=kill -HUP``, and what an operator types whose filesystem sends no inotify events,
NFS among them); its outcome is always logged, one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ssftp.config.accounts import Account, accounts_from_config
from ssftp.config.loader import LoadedConfig, load_config
from ssftp.errors import ConfigError
from ssftp.file_stamp import FileStamp
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event
from ssftp.tree_watch import Change, TreeWatch, keep_watching

logger = logging.getLogger(APP)

# How long the file is left to settle after a change before it is read: one save raises
# several events (truncate, write, close; or write elsewhere, rename).
SETTLE_SECONDS = 0.2
# Without a watch (it failed), how often the file is looked at, and how soon a watch is tried
# again.
UNWATCHED_POLL_SECONDS = 2.0
REWATCH_SECONDS = 60.0


@dataclass(frozen=True)
class ActiveConfig:
    loaded: LoadedConfig
    accounts: Mapping[str, Account]


def log_warnings(loaded: LoadedConfig) -> None:
    for warning in loaded.warnings:
        log_event(logger, "config warning", logging.WARNING, detail=warning.describe(loaded.source))


class ConfigStore:
    """Holds the active config; readers take ``store.current`` once per login or run."""

    def __init__(self, path: Path, layout: DataLayout, active: ActiveConfig,
                 identity: FileStamp | None) -> None:
        self.path = path
        self.layout = layout
        self.current = active
        self._listeners: list[Callable[[ActiveConfig], None]] = []
        # One save can raise several change events: the same rejection is logged once.
        self._rejected: list[str] = []
        # The file as it was when ``active`` was read (see _identity): a change made before the
        # watch is set up is noticed once it is.
        self._seen = identity
        # Why the file is to be read now whether or not it changed (ask), and the event that
        # wakes the watch for it (set while :meth:`watch` runs).
        self._asked: str | None = None
        self._wake: asyncio.Event | None = None

    @classmethod
    def open(cls, path: Path, layout: DataLayout) -> ConfigStore:
        """Load the file for the first time; a bad file raises, so the process does not start.

        Warnings are logged by the caller once logging is configured (log_warnings)."""
        identity = _identity(path.absolute())  # before the read: a change during it is seen
        loaded = load_config(path)
        return cls(path, layout, ActiveConfig(loaded, accounts_from_config(loaded.config, layout)),
                   identity)

    def on_change(self, listener: Callable[[ActiveConfig], None]) -> None:
        self._listeners.append(listener)

    def ask(self, trigger: str) -> None:
        """Read the file again now, whether or not it looks changed, and log the outcome
        (reloaded, rejected or unchanged) with ``trigger`` (``SIGHUP``). Call it on the loop
        that runs :meth:`watch`."""
        self._asked = trigger
        if self._wake is not None:
            self._wake.set()

    def reload(self) -> bool:
        """Re-read the file; True when a new valid config is now active.

        This blocks for as long as the file takes (seconds for 40 000 accounts): on an event
        loop, :meth:`watch` reads it in a thread instead."""
        return self._apply(self._read())

    def _read(self, trigger: str | None = None) -> ActiveConfig | None:
        """The file's config, validated and with its accounts built; None when it is invalid
        (logged, once per set of problems, or whenever ``trigger`` asked) or unchanged (logged
        when ``trigger`` asked). Touches nothing that sessions read, so it may run in any
        thread."""
        asked = {"trigger": trigger} if trigger else {}
        try:
            loaded = load_config(self.path)
        except ConfigError as exc:
            problems = [issue.describe(exc.source) for issue in exc.issues]
            if problems != self._rejected or trigger:
                log_event(logger, "config change rejected, keeping the last good config",
                          logging.ERROR, source=str(self.path), problems=problems, **asked)
            self._rejected = problems
            return None
        self._rejected = []
        if loaded.digest == self.current.loaded.digest:
            if trigger:
                log_event(logger, "config unchanged", source=str(self.path), **asked)
            return None
        log_warnings(loaded)
        return ActiveConfig(loaded, accounts_from_config(loaded.config, self.layout))

    def _apply(self, active: ActiveConfig | None, trigger: str | None = None) -> bool:
        """Make ``active`` the config in force (one assignment: a reader sees the old one or
        the new one whole) and tell the listeners."""
        if active is None:
            return False
        self.current = active
        log_event(logger, "config reloaded", source=str(self.path),
                  accounts=len(active.accounts), **({"trigger": trigger} if trigger else {}))
        for listener in self._listeners:
            listener(active)
        return True

    async def watch(self) -> None:
        """Reload whenever the file changes; runs until cancelled.

        Any change in the file's directory makes it look at the file (a stat, following
        symlinks): the file written in place or renamed over, or the directory's own symlink
        swapped under it, as a Kubernetes ConfigMap update does. Sub-directories are not
        watched: the directory may hold the data root. A name in the directory, whatever its
        bytes, is harmless (watchfiles, used before, stopped for good at a name that is not
        UTF-8, and hot reload with it); while the kernel refuses a watch, the file is looked
        at every UNWATCHED_POLL_SECONDS.

        The file is read in a thread: the loop that runs this serves every SFTP session, and
        on main a reload to 40 000 accounts held it for seconds (listings went from 0.3 s to
        6.9 s). The new config is applied on the loop, so listeners run there as before. One
        read at a time: a change noticed during a read is read once this one is applied, so
        the last content wins; so does :meth:`ask`, which sets the same event."""
        target = self.path.absolute()
        changed = self._wake = asyncio.Event()
        if self._asked:
            changed.set()
        watched = False

        def look(_change: Change | None = None) -> None:
            if (now := _identity(target)) != self._seen:
                self._seen = now
                changed.set()

        def watching(now_watched: bool) -> None:
            nonlocal watched
            watched = now_watched
            look()  # a change made while there was no watch

        keeping = asyncio.create_task(keep_watching(
            lambda: TreeWatch(target.parent, skip=lambda _name: True), look, watching,
            "config", "the file is looked at instead", UNWATCHED_POLL_SECONDS, REWATCH_SECONDS))
        try:
            while True:
                if not watched:
                    look()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(UNWATCHED_POLL_SECONDS):
                        await changed.wait()
                if changed.is_set():
                    await asyncio.sleep(SETTLE_SECONDS)  # one save raises several events
                    changed.clear()
                    trigger, self._asked = self._asked, None
                    self._apply(await asyncio.to_thread(self._read, trigger), trigger)
        finally:
            self._wake = None
            keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeping


def _identity(path: Path) -> FileStamp | None:
    """Which file is there and what it holds (a rename over it, a swapped symlink, a write in
    place each change it); None while there is none."""
    try:
        return FileStamp.of(path.stat())
    except OSError:
        return None
