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
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from deployments.prefect_server import flush_prefect_workers, is_healthy
from deployments.staging_watcher import StagingWatcher
from deployments.transfers import TransferDeployments
from flows.events import emit_waiting
from flows.notify import NotifyRuns
from flows.scan import ScanRuns
from ssftp.claims import ClaimArea
from ssftp.clamd import ClamdAddress, ClamdClient
from ssftp.config.reload import ActiveConfig, ConfigStore
from ssftp.errors import NoClamdError, OutboxError
from ssftp.health import Address, Status, clamd_status, metrics_listening, up_or_down
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event, warn_on_stderr
from ssftp.metrics import TRANSFERS
from ssftp.outbox import Outbox, StoredNotification
from ssftp.processes import StopDeadline, run_until_stopped
from ssftp.scanner import Scanner, ScanResult
from ssftp.staging_owners import StagingOwners
from ssftp.verdict_router import Area
from ssftp.webhooks import notifications_for

logger = logging.getLogger(APP)

# The outbox is looked at this often for what is due (a failed delivery's next try); a start
# looks at once, for what a crashed predecessor owed.
OWED_CHECK_SECONDS = 30.0
# Settled notifications are kept this long (to answer "was it sent?"), then forgotten.
SETTLED_KEPT_SECONDS = 7 * 24 * 3600.0


def warn_if_clamd_is_silent(client: ClamdClient | None) -> None:
    """At start, a clamd that does not answer PING is said at once (on stderr and in the log,
    naming its address) rather than found out from the first upload's scanError. Only a
    warning: clamd may come up later, and files wait in staging for it meanwhile."""
    if client is None or client.ping():
        return
    warn_on_stderr(f"clamd at {client.address} does not answer; staged files wait until it "
                   "does (check clamav.address)")
    log_event(logger, "clamd does not answer", logging.WARNING, address=str(client.address))


def build_scanner(layout: DataLayout, active: ActiveConfig, claims: ClaimArea,
                  started_clamd: ClamdAddress | None,
                  owe: Callable[[ScanResult], None] | None = None) -> Scanner:
    """The scanner a config asks for; ``started_clamd`` is the one ``ssftp up`` started, and
    ``owe`` stores the webhooks of a file about to move."""
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
                   instance=config.instance_name, claims=claims, owe=owe)


@dataclass
class ScanWorker:
    store: ConfigStore
    started_clamd: ClamdAddress | None = None
    watcher: StagingWatcher = field(init=False)
    runs: ScanRuns = field(init=False)
    transfers: TransferDeployments = field(init=False)
    notifier: NotifyRuns = field(init=False)
    _notifying: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        layout = self.store.layout
        claims = ClaimArea(layout.staging)
        self.notifier = NotifyRuns(Outbox(layout.outbox),
                                   lambda: self.store.current.loaded.config.webhooks)
        self.runs = ScanRuns(build_scanner(layout, self.store.current, claims,
                                           self.started_clamd, self._owe))
        self.watcher = StagingWatcher(
            staging=layout.staging, claims=claims,
            settings=lambda: self.store.current.loaded.config.scanning,
            scan_batch=self.runs.scan_batch, on_results=self._notify,
            clamd=lambda: self.runs.scanner.client)
        self.store.on_change(self._reconfigure)
        self.transfers = TransferDeployments(self.store, str(self.store.path.absolute()),
                                             str(layout.root))
        # The transfers' runs count their files in system/: this process exports them.
        TRANSFERS.read_from(layout.system)
        if not self.store.current.loaded.config.enable_virus_scan:
            log_event(logger, "virus scanning is OFF (enableVirusScan: false): staged files "
                      "go to clean/ unscanned", logging.WARNING)

    def clamd_status(self) -> Status:
        """/healthz's clamd check, on the clamd the scans use now (a reload may change it)."""
        return clamd_status(self.runs.scanner.client)

    def _reconfigure(self, active: ActiveConfig) -> None:
        try:
            self.runs.scanner = build_scanner(self.store.layout, active, self.watcher.claims,
                                              self.started_clamd, self._owe)
        except NoClamdError as exc:
            log_event(logger, "config change not applied to scanning", logging.ERROR,
                      error=str(exc))

    def _owe(self, result: ScanResult) -> None:
        """The scanner's hook (in its thread), between a file's audit record and its move to
        quarantine/ or clean/: the webhooks it owes are stored first, so a crash after the
        move cannot lose them. Raises OutboxError, and the file then stays."""
        config = self.store.current.loaded.config
        self.notifier.outbox.add(
            item.stored() for item in notifications_for(config.webhooks, result, 1,
                                                        config.instance_name))

    def _notify(self, results: list[ScanResult], attempts: dict[str, int]) -> None:
        """After a run: store what the files left in staging owe (a first failure's scanError;
        a crash before this loses nothing, as such a file is scanned again), then send all
        that is owed, the moved files' included. Their ``ssftp.file.waiting`` events go out
        here too, by the same first-failure rule: only now are the attempts counted."""
        config = self.store.current.loaded.config
        emit_waiting(results, attempts, config.instance_name)
        owed = [item.stored() for result in results if result.area is Area.STAGING
                for item in notifications_for(config.webhooks, result,
                                              attempts.get(result.file, 1), config.instance_name)]
        self._in_background(self._store_and_send(owed))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _store_and_send(self, owed: list[StoredNotification]) -> None:
        try:
            if owed:
                await asyncio.to_thread(self.notifier.outbox.add, owed)
        except OutboxError as exc:
            log_event(logger, "webhook notifications not stored", logging.ERROR,
                      error=str(exc), count=len(owed))
            return
        await self.notifier.send_owed()

    async def _send_owed_periodically(self) -> None:
        """At start, what a crashed predecessor owed; then what failed and is due again."""
        outbox = self.notifier.outbox
        while True:
            self._in_background(self.notifier.send_owed())
            try:
                await asyncio.to_thread(outbox.forget_settled,
                                        settled_before=time.time() - SETTLED_KEPT_SECONDS)
            except OutboxError as exc:
                log_event(logger, "webhook outbox not pruned", logging.WARNING, error=str(exc))
            await asyncio.sleep(OWED_CHECK_SECONDS)

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Watch staging and scan, and serve the transfers, until cancelled or one part fails;
        notifications in flight are given a moment to finish, then cancelled (their runs show
        as cancelled or crashed, not lost silently)."""
        await asyncio.to_thread(warn_if_clamd_is_silent, self.runs.scanner.client)
        await asyncio.to_thread(self.runs.warm_up)
        ready_parts = [asyncio.Event(), asyncio.Event()]
        parts = [asyncio.create_task(self.watcher.run(ready_parts[0])),
                 asyncio.create_task(self.transfers.run(ready_parts[1])),
                 asyncio.create_task(self._send_owed_periodically())]
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


async def run_worker(store: ConfigStore, api_url: str, metrics: Address | None = None) -> None:
    """``ssftp worker``: the watcher and flows only, with hot reload, until SIGINT/SIGTERM;
    ``/metrics`` and ``/healthz`` on ``metrics`` when given (its Prefect check asks
    ``api_url``)."""
    worker = ScanWorker(store)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(store.watch())]
    log_event(logger, "scan worker started", staging=str(store.layout.staging))
    checks = {"clamd": worker.clamd_status,
              "prefect": lambda: up_or_down(is_healthy(api_url))}
    try:
        with metrics_listening(metrics, checks):
            stopped = asyncio.create_task(run_until_stopped())
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped:
                task.result()
    finally:
        # Bounded like ``ssftp up``'s stop; Prefect's workers are flushed while the API
        # answers, or Python's exit would wait on them for as long as it does not.
        deadline = StopDeadline()
        deadline.arm("stopping the scan worker")
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        deadline.step("flushing Prefect's log and event workers")
        await asyncio.to_thread(flush_prefect_workers)
        deadline.step("exiting (Python's exit handlers)")
        log_event(logger, "scan worker stopped")
