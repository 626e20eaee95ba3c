"""Hot reload: the current good config, swapped whole when the file changes and is valid.

The parent directory is watched rather than the file, so both ways of changing a file work:
written in place, or written elsewhere and renamed over it (editors, Kubernetes ConfigMaps).
An invalid change is logged with its reasons and the last good config stays in force. The
watcher reads the file in a thread and swaps the new config in on its loop (:meth:`watch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from ssftp.accounts import Account, accounts_from_config
from ssftp.config.loader import LoadedConfig, load_config
from ssftp.errors import ConfigError
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event

logger = logging.getLogger(APP)


@dataclass(frozen=True)
class ActiveConfig:
    loaded: LoadedConfig
    accounts: Mapping[str, Account]


def log_warnings(loaded: LoadedConfig) -> None:
    for warning in loaded.warnings:
        log_event(logger, "config warning", logging.WARNING, detail=warning.describe(loaded.source))


class ConfigStore:
    """Holds the active config; readers take ``store.current`` once per login or run."""

    def __init__(self, path: Path, layout: DataLayout, active: ActiveConfig) -> None:
        self.path = path
        self.layout = layout
        self.current = active
        self._listeners: list[Callable[[ActiveConfig], None]] = []
        # One save can raise several change events: the same rejection is logged once.
        self._rejected: list[str] = []

    @classmethod
    def open(cls, path: Path, layout: DataLayout) -> ConfigStore:
        """Load the file for the first time; a bad file raises, so the process does not start.

        Warnings are logged by the caller once logging is configured (log_warnings)."""
        loaded = load_config(path)
        return cls(path, layout, ActiveConfig(loaded, accounts_from_config(loaded.config, layout)))

    def on_change(self, listener: Callable[[ActiveConfig], None]) -> None:
        self._listeners.append(listener)

    def reload(self) -> bool:
        """Re-read the file; True when a new valid config is now active.

        This blocks for as long as the file takes (seconds for 40 000 accounts): on an event
        loop, :meth:`watch` reads it in a thread instead."""
        return self._apply(self._read())

    def _read(self) -> ActiveConfig | None:
        """The file's config, validated and with its accounts built; None when it is invalid
        (logged, once per set of problems) or unchanged. Touches nothing that sessions read,
        so it may run in any thread."""
        try:
            loaded = load_config(self.path)
        except ConfigError as exc:
            problems = [issue.describe(exc.source) for issue in exc.issues]
            if problems != self._rejected:
                log_event(logger, "config change rejected, keeping the last good config",
                          logging.ERROR, source=str(self.path), problems=problems)
            self._rejected = problems
            return None
        self._rejected = []
        if loaded.digest == self.current.loaded.digest:
            return None
        log_warnings(loaded)
        return ActiveConfig(loaded, accounts_from_config(loaded.config, self.layout))

    def _apply(self, active: ActiveConfig | None) -> bool:
        """Make ``active`` the config in force (one assignment: a reader sees the old one or
        the new one whole) and tell the listeners."""
        if active is None:
            return False
        self.current = active
        log_event(logger, "config reloaded", source=str(self.path),
                  accounts=len(active.accounts))
        for listener in self._listeners:
            listener(active)
        return True

    async def watch(self) -> None:
        """Reload whenever the file changes; runs until cancelled.

        The file is read in a thread: the loop that runs this serves every SFTP session, and
        on main a reload to 40 000 accounts held it for seconds (listings went from 0.3 s to
        6.9 s). The new config is applied on the loop, so listeners run there as before. One
        read at a time: a change made during a read is in the watcher's next batch (it keeps
        collecting meanwhile), read once this one is applied, so the last content wins."""
        target = self.path.absolute()

        def is_ours(_change: watchfiles.Change, changed: str) -> bool:
            return Path(changed) == target

        # Not recursive: the file's directory may hold the data root (uploads would wake the
        # watcher for every file).
        async for _changes in watchfiles.awatch(target.parent, watch_filter=is_ours,
                                                 recursive=False, debounce=200, step=50):
            self._apply(await asyncio.to_thread(self._read))
