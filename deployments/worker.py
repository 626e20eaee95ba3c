"""The worker: the staging watcher with the scan and notify flows, and the transfer
deployments (downloaders and uploaders).

``ssftp worker`` runs it against ``PREFECT_API_URL``; ``ssftp up`` runs it beside the SFTP
server. A config reload swaps the scanner (accounts, clamd settings, scanning on/off) and the
webhooks, and updates the transfer schedules; runs in progress finish with what they started
with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from deployments.staging_watcher import StagingWatcher
from deployments.transfers import TransferDeployments
from flows.notify import notify
from flows.scan import ScanRuns
from ssftp.claims import ClaimArea
from ssftp.clamd import ClamdAddress, ClamdClient
from ssftp.config.reload import ActiveConfig, ConfigStore
from ssftp.errors import NoClamdError
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event
from ssftp.processes import run_until_stopped
from ssftp.scanner import Scanner, ScanResult
from ssftp.staging_owners import StagingOwners
from ssftp.webhooks import Notification, notifications_for

logger = logging.getLogger(APP)


def build_scanner(layout: DataLayout, active: ActiveConfig, claims: ClaimArea,
                  started_clamd: ClamdAddress | None) -> Scanner:
    """The scanner a config asks for; ``started_clamd`` is the one ``ssftp up`` started."""
    config = active.loaded.config
    client = None
    if config.enable_virus_scan:
        configured = config.clamav.address
        address = ClamdAddress.parse(configured) if configured else started_clamd
        if address is None:
            raise NoClamdError("scanning is on but no clamd is configured: set clamav.address "
                               "(a socket path or host:port), or use `ssftp up`")
        client = ClamdClient(address, timeout=config.clamav.timeout,
                             max_file_size=config.clamav.max_file_size)
    return Scanner(layout, client, mode=config.clamav.mode, owners=StagingOwners(config),
                   instance=config.instance_name, claims=claims)


@dataclass
class ScanWorker:
    store: ConfigStore
    started_clamd: ClamdAddress | None = None
    watcher: StagingWatcher = field(init=False)
    runs: ScanRuns = field(init=False)
    transfers: TransferDeployments = field(init=False)
    _notifying: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        layout = self.store.layout
        claims = ClaimArea(layout.staging)
        self.runs = ScanRuns(build_scanner(layout, self.store.current, claims,
                                           self.started_clamd))
        self.watcher = StagingWatcher(
            staging=layout.staging, claims=claims,
            settings=lambda: self.store.current.loaded.config.scanning,
            scan_batch=self.runs.scan_batch, on_results=self._notify)
        self.store.on_change(self._reconfigure)
        self.transfers = TransferDeployments(self.store, str(self.store.path.absolute()),
                                             str(layout.root))
        if not self.store.current.loaded.config.enable_virus_scan:
            log_event(logger, "virus scanning is OFF (enableVirusScan: false): staged files "
                      "go to clean/ unscanned", logging.WARNING)

    def _reconfigure(self, active: ActiveConfig) -> None:
        try:
            self.runs.scanner = build_scanner(self.store.layout, active, self.watcher.claims,
                                              self.started_clamd)
        except NoClamdError as exc:
            log_event(logger, "config change not applied to scanning", logging.ERROR,
                      error=str(exc))

    def _notify(self, results: list[ScanResult], attempts: dict[str, int]) -> None:
        config = self.store.current.loaded.config
        notifications = [
            item for result in results
            for item in notifications_for(config.webhooks, result,
                                          attempts.get(result.file, 1), config.instance_name)]
        if notifications:
            task = asyncio.create_task(self._send(notifications))
            self._notifying.add(task)
            task.add_done_callback(self._notifying.discard)

    @staticmethod
    async def _send(notifications: list[Notification]) -> None:
        try:
            await notify(notifications)
        except Exception as exc:
            log_event(logger, "webhook notifications failed", logging.ERROR,
                      error=f"{type(exc).__name__}: {exc}", count=len(notifications))

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Watch staging and scan, and serve the transfers, until cancelled or one part fails;
        notifications in flight are given a moment to finish, then cancelled (their runs show
        as cancelled or crashed, not lost silently)."""
        await asyncio.to_thread(self.runs.warm_up)
        ready_parts = [asyncio.Event(), asyncio.Event()]
        parts = [asyncio.create_task(self.watcher.run(ready_parts[0])),
                 asyncio.create_task(self.transfers.run(ready_parts[1]))]
        waiting = asyncio.gather(*(part.wait() for part in ready_parts))
        first: list[asyncio.Future[Any]] = [*parts, waiting]
        try:
            done, _ = await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done and ready is not None:
                ready.set()
            await asyncio.gather(*parts)
        finally:
            waiting.cancel()
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            if self._notifying:
                _, pending = await asyncio.wait(self._notifying, timeout=5)
                for task in pending:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


async def run_worker(store: ConfigStore) -> None:
    """``ssftp worker``: the watcher and flows only, with hot reload, until SIGINT/SIGTERM."""
    worker = ScanWorker(store)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(store.watch())]
    log_event(logger, "scan worker started", staging=str(store.layout.staging))
    try:
        stopped = asyncio.create_task(run_until_stopped())
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped:
                task.result()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log_event(logger, "scan worker stopped")
