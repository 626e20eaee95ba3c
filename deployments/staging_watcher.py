"""The staging watcher: turns completed files in ``staging/`` into batched scan runs.

Changes come from watchfiles (inotify). A changed path waits until it is complete
(:mod:`ssftp.readiness`); complete files are collected for ``batchWindowSeconds`` and handed
to one scan run; files that could not be scanned come back after a backoff
(:mod:`ssftp.retry_schedule`). Webhook notifications go to their own runs, which the watcher
does not wait for. On start it sweeps staging, and takes over claims left by a crashed scanner,
so a crash loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from ssftp.claims import HEARTBEAT_SECONDS, ClaimArea
from ssftp.config.schema import ScanningSettings
from ssftp.layout import CLAIMS_DIR, is_pending_name
from ssftp.logs import APP, log_event
from ssftp.readiness import ReadinessTracker
from ssftp.retry_schedule import RetrySchedule
from ssftp.scanner import ScanResult
from ssftp.verdict_router import Area

logger = logging.getLogger(APP)

ScanBatch = Callable[[list[Path]], Awaitable[list[ScanResult]]]
# Called with each batch's results and the failed-attempt count of each file that failed.
ResultsHandler = Callable[[list[ScanResult], dict[str, int]], None]

_TICK_SECONDS = 0.05
# Staging is walked again this often: inotify drops events when its queue overflows, and
# reports names that are not UTF-8 in a lossy form; a walk finds what events missed.
RESWEEP_SECONDS = 300.0


def is_candidate(staging: Path, path: Path) -> bool:
    """True for a path the scanner may take: not ssftp's own, not an upload in progress."""
    try:
        parts = path.relative_to(staging).parts
    except ValueError:
        return False
    return bool(parts) and parts[0] != CLAIMS_DIR and not any(map(is_pending_name, parts))


def staged_files(staging: Path, below: Path | None = None) -> list[Path]:
    """Every candidate file below ``below`` (default: all of staging)."""
    found = []
    for directory, dirs, names in os.walk(below or staging):
        dirs[:] = [d for d in dirs if not is_pending_name(d)]
        found += [path for name in names
                  if is_candidate(staging, path := Path(directory, name))]
    return found


@dataclass
class StagingWatcher:
    staging: Path
    claims: ClaimArea
    settings: Callable[[], ScanningSettings]
    scan_batch: ScanBatch
    on_results: ResultsHandler
    tracker: ReadinessTracker = field(init=False)
    retries: RetrySchedule = field(init=False)
    # Insertion-ordered set: a path queued twice is scanned once.
    _batch: dict[Path, None] = field(init=False, default_factory=dict)
    _batch_started: float = field(init=False, default=0.0)
    _ready_now: list[Path] = field(init=False, default_factory=list)
    # The scan run in flight. One at a time: concurrent runs make the Prefect server's SQLite
    # refuse writers, and its client waits 2 s before each retry (seen in bench/). But the
    # watcher does not wait for the run: the next batch is collected (readiness, batch window)
    # while it scans, and starts as soon as it ends.
    _running: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        settings = self.settings()
        self.tracker = ReadinessTracker(settings.stable_seconds)
        self.retries = RetrySchedule(settings.retry_initial_seconds, settings.retry_max_seconds)

    def sweep(self) -> None:
        """Queue what a previous run left: orphaned claims first (they were complete), then
        every file in staging (checked for completeness like any other)."""
        orphans = self.claims.orphaned()
        if orphans:
            log_event(logger, "taking over files claimed by a scanner that stopped",
                      count=len(orphans))
        self._ready_now += orphans
        now = time.monotonic()
        for path in staged_files(self.staging):
            self.tracker.saw(path, now)

    def resweep(self, found: list[Path]) -> None:
        """Queue the files of a new walk of staging that nothing has noticed yet (see
        ``RESWEEP_SECONDS``); files already queued or waiting for a retry keep their place."""
        now = time.monotonic()
        for path in found:
            if (path not in self.tracker and path not in self._batch
                    and not self.retries.waiting(path, now)):
                self.tracker.saw(path, now)

    def _changed(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        now = time.monotonic()
        for change, name in changes:
            path = Path(name)
            if not is_candidate(self.staging, path):
                continue
            if change is watchfiles.Change.deleted:
                self.tracker.forget(path)
            elif path.is_dir() and not path.is_symlink():
                # A directory moved in whole brings files that raise no events of their own.
                for inner in staged_files(self.staging, path):
                    self.tracker.saw(inner, now)
            else:
                self.tracker.saw(path, now)

    def _collect(self, now: float) -> None:
        settings = self.settings()
        self.tracker.stable_seconds = settings.stable_seconds
        self.retries.initial_seconds = settings.retry_initial_seconds
        self.retries.max_seconds = settings.retry_max_seconds
        ready = self._ready_now + self.retries.due(now) + [
            path for path in self.tracker.ready(now) if not self.retries.waiting(path, now)]
        self._ready_now = []
        if ready and not self._batch:
            self._batch_started = now
        self._batch.update(dict.fromkeys(ready))

    def _take_batch(self, now: float) -> list[Path]:
        settings = self.settings()
        if not self._batch:
            return []
        full = len(self._batch) >= settings.max_batch_files
        if not full and now - self._batch_started < settings.batch_window_seconds:
            return []
        queued = list(self._batch)
        batch = queued[:settings.max_batch_files]
        self._batch = dict.fromkeys(queued[settings.max_batch_files:])
        self._batch_started = now
        return batch

    async def _dispatch(self, batch: list[Path]) -> None:
        try:
            results = await self.scan_batch(batch)
        except Exception as exc:
            # The run itself failed (e.g. the Prefect API is unreachable): whatever this
            # process had claimed goes back into the queue, and every file is retried.
            log_event(logger, "scan run failed; its files will be retried", logging.ERROR,
                      error=f"{type(exc).__name__}: {exc}", files=len(batch))
            now = time.monotonic()
            for path in [*batch, *self.claims.held()]:
                self.retries.failed(path, now)
            return
        now = time.monotonic()
        attempts: dict[str, int] = {}
        for path in batch:
            self.retries.succeeded(path)
        for result in results:
            if result.area is Area.STAGING:
                where = self.staging.parent / result.destination
                attempts[result.file] = self.retries.failed(where, now)
        self.on_results(results, attempts)
        # Claims taken over from a dead scanner leave its directories behind, now empty.
        self.claims.remove_empty_orphans()

    async def _watch(self) -> None:
        async for changes in watchfiles.awatch(self.staging, step=20, debounce=200,
                                               recursive=True, ignore_permission_denied=True):
            self._changed(changes)

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Watch and scan until cancelled."""
        watch = asyncio.create_task(self._watch())
        try:
            # watchfiles needs a moment to set up its watches; sweeping after that start means a
            # file arriving meanwhile is seen by one or the other (seeing it twice is harmless).
            await asyncio.sleep(0.2)
            self.sweep()
            if ready is not None:
                ready.set()
            last_heartbeat = 0.0
            last_sweep = time.monotonic()
            while True:
                if time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                    self.claims.heartbeat()
                    last_heartbeat = time.monotonic()
                if time.monotonic() - last_sweep > RESWEEP_SECONDS:
                    self.resweep(await asyncio.to_thread(staged_files, self.staging))
                    last_sweep = time.monotonic()
                if watch.done():
                    watch.result()  # a watcher failure must stop the service, not go silent
                now = time.monotonic()
                self._collect(now)
                if self._running is not None and self._running.done():
                    self._running.result()  # like the watch: a failure stops the service
                    self._running = None
                if self._running is None and (batch := self._take_batch(now)):
                    self._running = asyncio.create_task(self._dispatch(batch))
                    continue
                await asyncio.sleep(_TICK_SECONDS)
        finally:
            if self._running is not None:
                self._running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._running
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
