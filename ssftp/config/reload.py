"""Hot reload: the current good config, swapped whole when the file changes and is valid.

The parent directory is watched rather than the file, so both ways of changing a file work:
written in place, or written elsewhere and renamed over it (editors, Kubernetes ConfigMaps).
An invalid change is logged with its reasons and the last good config stays in force.
"""

from __future__ import annotations

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
        """Re-read the file; True when a new valid config is now active."""
        try:
            loaded = load_config(self.path)
        except ConfigError as exc:
            problems = [issue.describe(exc.source) for issue in exc.issues]
            if problems != self._rejected:
                log_event(logger, "config change rejected, keeping the last good config",
                          logging.ERROR, source=str(self.path), problems=problems)
            self._rejected = problems
            return False
        self._rejected = []
        if loaded.digest == self.current.loaded.digest:
            return False
        log_warnings(loaded)
        self.current = ActiveConfig(loaded, accounts_from_config(loaded.config, self.layout))
        log_event(logger, "config reloaded", source=str(self.path),
                  accounts=len(self.current.accounts))
        for listener in self._listeners:
            listener(self.current)
        return True

    async def watch(self) -> None:
        """Reload whenever the file changes; runs until cancelled."""
        target = self.path.absolute()

        def is_ours(_change: watchfiles.Change, changed: str) -> bool:
            return Path(changed) == target

        # Not recursive: the file's directory may hold the data root (uploads would wake the
        # watcher for every file).
        async for _changes in watchfiles.awatch(target.parent, watch_filter=is_ours,
                                                 recursive=False, debounce=200, step=50):
            self.reload()
