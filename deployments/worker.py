"""The worker: the staging watcher with the scan and notify flows, the rescan watcher (a second
look when the signatures change), and the scheduled deployments (downloaders, uploaders,
signature updates, retention).

``ssftp worker`` runs it against ``PREFECT_API_URL``; ``ssftp up`` runs it beside the SFTP
server. Either way on a thread and event loop of its own (:class:`WorkerThread`). A config
reload swaps the scanner (accounts, clamd settings, scanning on/off) and the webhooks, and
updates the transfer schedules; runs in progress finish with what they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from deployments.prefect_client import retry_locked_writes_soon, shared_sync_client
from deployments.prefect_flush import flush_prefect_workers
from deployments.rescan_watcher import RescanWatcher
from deployments.retention import RETENTION
from deployments.schedules import ScheduledDeployments
from deployments.signatures import SIGNATURES, update_at_start
from deployments.staging_watcher import StagingWatcher
from deployments.transfers import TRANSFER_DEPLOYMENTS
from flows.clamd_budget import budget_on
from flows.events import clean_events_on
from flows.notify import NotifyRuns
from flows.rescan import RescanRuns
from flows.scan import ScanRuns
from ssftp.addresses import Address, ClamdAddress
from ssftp.config.reload import ActiveConfig, ConfigStore
from ssftp.errors import NoClamdError, OutboxError, WorkerDiedError
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event, warn_on_stderr
from ssftp.metrics import TRANSFERS, worker_started
from ssftp.notify.outbox import Outbox
from ssftp.notify.record import OutboxRecorder
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.runtime.listener import (
    Check,
    Status,
    engine_status,
    metrics_listening,
    signatures_status,
    up_or_down,
)
from ssftp.runtime.loop_thread import LoopThread
from ssftp.runtime.prefect_server import is_healthy
from ssftp.runtime.stop import StopDeadline, run_until_stopped
from ssftp.scan.claims import Claims
from ssftp.scan.database import updatable
from ssftp.scan.engines import ENGINE_NAMES, Engine, configured_engines, engines_in
from ssftp.scan.owners import StagingOwners
from ssftp.scan.queue import Lane, PrefectDatabase
from ssftp.scan.record import Recorder
from ssftp.scan.rescan import Rescanner
from ssftp.scan.results import ScanResult
from ssftp.scan.scanner import Scanner
from ssftp.scan.workers import Heartbeats, default_name
from ssftp.transfer.state import stored_totals

logger = logging.getLogger(APP)

# The outbox is looked at this often for what is due (a failed delivery's next try); a start
# looks at once, for what a crashed predecessor owed.
OWED_CHECK_SECONDS = 30.0
# Settled notifications are kept this long (to answer "was it sent?"), then forgotten.
SETTLED_KEPT_SECONDS = 7 * 24 * 3600.0


def warn_if_silent(scanning: Engine | None) -> None:
    """At start, an engine that does not answer (clamd's PING, ICAP's OPTIONS) is said at
    once (on stderr and in the log, naming its address) rather than found out from the first
    upload's scanError. Only a warning: it may come up later, and files wait in staging for
    it meanwhile."""
    for engine in engines_in(scanning):
        if not engine.ping():
            key = "clamav.address" if engine.name == "clamd" else "icap.servers"
            warn_on_stderr(f"{engine} does not answer; staged files wait until it does "
                           f"(check {key})")
            log_event(logger, "engine does not answer", logging.WARNING, engine=str(engine))


def build_scanner(layout: DataLayout, active: ActiveConfig, claims: Claims,
                  started_clamd: ClamdAddress | None, recorder: Recorder | None = None,
                  worker: str | None = None) -> Scanner:
    """The scanner a config asks for; ``started_clamd`` is the one ``ssftp up`` started,
    ``recorder`` where its outcomes are recorded (the audit log only, by default), and
    ``worker`` the name its outcomes carry (``<host>.<pid>`` by default)."""
    config = active.loaded.config
    engines = None
    if config.enable_virus_scan:
        clamds = config.clamav.addresses or ([started_clamd] if started_clamd else [])
        engines = configured_engines(config, clamds)
    return Scanner(layout, engines, mode=config.clamav.mode, owners=StagingOwners(config),
                   instance=config.instance_name, claims=claims, recorder=recorder,
                   worker=worker)


@dataclass
class ScanWorker:
    store: ConfigStore
    started_clamd: ClamdAddress | None = None
    # What its outcomes, records and runs say judged them (ssftp.scan.workers).
    name: str = field(default_factory=default_name)
    # The Prefect server's database, when this process started that server (ssftp up).
    database: PrefectDatabase | None = None
    watcher: StagingWatcher = field(init=False)
    runs: ScanRuns = field(init=False)
    scheduled: ScheduledDeployments = field(init=False)
    notifier: NotifyRuns = field(init=False)
    recorder: OutboxRecorder = field(init=False)
    rescans: RescanRuns | None = field(init=False, default=None)
    rescan_watcher: RescanWatcher = field(init=False)
    _notifying: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        layout = self.store.layout
        claims = Claims(layout.staging)
        # One for the process, whichever scanner a reload builds: it counts the failures.
        self.recorder = OutboxRecorder(Outbox(layout.outbox),
                                       lambda: self.store.current.loaded.config)
        self.notifier = NotifyRuns(self.recorder.outbox,
                                   lambda: self.store.current.loaded.config.webhooks)
        self.runs = ScanRuns(
            build_scanner(layout, self.store.current, claims, self.started_clamd,
                          self.recorder, self.name),
            clean_events=lambda: clean_events_on(
                self.store.current.loaded.config.scanning.clean_file_events, self.database),
            budgeted=self._budgeted)
        worker_started(self.name)
        self.watcher = StagingWatcher(
            staging=layout.staging, claims=claims,
            settings=lambda: self.store.current.loaded.config.scanning,
            scan_batch=self._scan_and_notify, clamd=lambda: self.runs.scanner.client,
            heartbeats=Heartbeats(layout.workers, self.name), database=self.database)
        self._rescan_beside(self.runs.scanner)
        self.rescan_watcher = RescanWatcher(
            layout, runs=lambda: self.rescans,
            settings=lambda: self.store.current.loaded.config.rescan)
        self.store.on_change(self._reconfigure)
        self.scheduled = ScheduledDeployments(self.store, str(self.store.path.absolute()),
                                              str(layout.root),
                                              (*TRANSFER_DEPLOYMENTS, SIGNATURES, RETENTION))
        # The transfers' runs count their files in system/: this process exports them.
        TRANSFERS.read_from(partial(stored_totals, layout.system))
        config = self.store.current.loaded.config
        if not config.enable_virus_scan:
            log_event(logger, "virus scanning is OFF (enableVirusScan: false): staged files "
                      "go to clean/ unscanned", logging.WARNING)
        elif not config.clamav.enabled:
            log_event(logger, "clamd is switched off (clamav.enabled: false): the ICAP "
                      "servers scan alone", servers=", ".join(config.icap.servers))
        elif isinstance(config.clamav.address, list):
            log_event(logger, "ssftp does not update the signatures of a pool of clamds "
                      "(clamav.address is a list): each clamd's own freshclam must",
                      logging.WARNING, address=", ".join(config.clamav.address))
        elif not updatable(config):
            log_event(logger, "ssftp does not update the signatures of the clamd at "
                      "clamav.address (its own freshclam must); set "
                      "clamav.signatures.databaseDirectory to the directory it loads for ssftp "
                      "to do it", logging.WARNING, address=config.clamav.address)

    def engine_status(self, name: str) -> Status:
        """/healthz's check of one engine ("clamd", "icap"), among those the scans use now (a
        reload may change them)."""
        return engine_status(self.runs.scanner.client, name)

    def signatures_status(self) -> Status:
        """/healthz's signatures check: are the loaded signatures older than the config's
        ``clamav.signatures.maxAgeSeconds``?"""
        config = self.store.current.loaded.config
        return signatures_status(self.runs.scanner.client,
                                 config.clamav.signatures.max_age_seconds)

    def _budgeted(self) -> bool:
        """Whether scans and rescans take slots of the clamd's budget (asked per run: a reload
        may set ``clamav.maxConcurrentScans``)."""
        return budget_on(self.store.current.loaded.config.clamav.max_concurrent_scans,
                         self.database)

    def _rescan_beside(self, scanner: Scanner) -> None:
        """Rescans look with what scans scan with (none when scanning is off)."""
        rescanner = Rescanner.beside(scanner)
        if rescanner is None:
            self.rescans = None
        elif self.rescans is None:
            self.rescans = RescanRuns(rescanner, self.watcher.busy, self._budgeted)
        else:
            self.rescans.rescanner = rescanner

    def _reconfigure(self, active: ActiveConfig) -> None:
        try:
            self.runs.scanner = build_scanner(self.store.layout, active, self.watcher.claims,
                                              self.started_clamd, self.recorder, self.name)
            self._rescan_beside(self.runs.scanner)
        except NoClamdError as exc:
            log_event(logger, "config change not applied to scanning", logging.ERROR,
                      error=str(exc))

    async def _scan_and_notify(self, paths: list[Path], lane: Lane) -> list[ScanResult]:
        """One scan run; then what its outcomes stored in the outbox goes out, in runs of
        their own that the watcher does not wait for (a receiver that hangs delays only its
        own notifications). What a run that failed half-way stored goes with the periodic
        look (:data:`OWED_CHECK_SECONDS`), as on a stop nothing new is started."""
        results = await self.runs.scan_batch(paths, lane)
        self._in_background(self.notifier.send_owed())
        self.rescan_watcher.judged(results)
        return results

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

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
        scan and rescan runs under way are asked to stop (they finish the file in hand and
        report, in a run state named ``Interrupted``), and notifications in flight are given a
        moment to finish, then cancelled (their runs show as cancelled or crashed, not lost
        silently)."""
        retry_locked_writes_soon()
        await asyncio.to_thread(warn_if_silent, self.runs.scanner.client)
        await self.runs.warm_up()
        with shared_sync_client():
            await self._run_parts(ready)

    async def _run_parts(self, ready: asyncio.Event | None) -> None:
        ready_parts = [asyncio.Event(), asyncio.Event()]
        parts = [asyncio.create_task(self.watcher.run(ready_parts[0])),
                 asyncio.create_task(self.scheduled.run(ready_parts[1])),
                 asyncio.create_task(self._send_owed_periodically()),
                 asyncio.create_task(self.rescan_watcher.run())]
        waiting = asyncio.gather(*(part.wait() for part in ready_parts))
        first: list[asyncio.Future[Any]] = [*parts, waiting]
        try:
            done, _ = await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done:
                await update_at_start(self.scheduled, self.store.layout)
                if ready is not None:
                    ready.set()
            # Not gather: a cancelled gather cancels the parts itself, and the finally below
            # cancelled them a second time, which cut their own stops short (the staging
            # watcher's wait for the runs under way, the runner's pause of the schedules).
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_EXCEPTION)
            for part in done:
                part.result()
        finally:
            waiting.cancel()
            # Before the parts are cancelled: the runs under way finish the file in hand and
            # report, rather than be cut short (flows.stopping).
            self.runs.stop()
            if self.rescans is not None:
                self.rescans.stop()
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            if self._notifying:
                _, pending = await asyncio.wait(self._notifying, timeout=5)
                for task in pending:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


# The worker's part of the stop's budget (``STOP_SECONDS`` in all) for its scans and
# notifications; then Prefect's workers are flushed (``FLUSH_SECONDS`` each), clamd stops,
# and the Prefect server (``SERVER_STOP_SECONDS``).
WORKER_STOP_SECONDS = 5.0


@dataclass
class WorkerThread:
    """A scan worker on a loop of its own (``ssftp up`` runs it beside the SFTP server)."""

    store: ConfigStore
    clamd: ClamdDaemon | None
    name: str = field(default_factory=default_name)
    database: PrefectDatabase | None = None
    _host: LoopThread = field(init=False)
    _done: Future[None] = field(init=False)
    _task: asyncio.Task[None] | None = field(init=False, default=None)
    _ready: threading.Event = field(init=False, default_factory=threading.Event)
    error: BaseException | None = field(init=False, default=None)
    scan_worker: ScanWorker | None = field(init=False, default=None)

    def start(self) -> None:
        self._host = LoopThread("ssftp-scan-worker")
        self._done = self._host.submit(self._main())
        self._ready.wait()
        if self.error is not None:
            raise self.error

    async def _main(self) -> None:
        try:
            worker = ScanWorker(self.store, self.clamd.address if self.clamd else None,
                                self.name, self.database)
            self.scan_worker = worker
            ready = asyncio.Event()
            self._task = asyncio.create_task(worker.run(ready))
            await asyncio.wait([self._task, asyncio.create_task(ready.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except BaseException as exc:
                self.error = exc

    def engine_status(self, name: str) -> Status:
        """/healthz's check of one engine the worker scans with now."""
        assert self.scan_worker is not None  # set before start() returns
        return self.scan_worker.engine_status(name)

    def engine_checks(self) -> dict[str, Check]:
        """/healthz's checks of the engines, by name."""
        return {name: partial(self.engine_status, name) for name in ENGINE_NAMES}

    def signatures_status(self) -> Status:
        """/healthz's signatures check, on the clamd the worker scans with now."""
        assert self.scan_worker is not None  # set before start() returns
        return self.scan_worker.signatures_status()

    @property
    def alive(self) -> bool:
        return not self._done.done()

    def stop(self, timeout: float) -> None:
        """Cancel the worker and wait up to ``timeout`` for it and its loop (scans under way
        finish their file, notifications in flight get a moment: ``ScanWorker.run``)."""
        deadline = time.monotonic() + timeout
        if self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._host.loop.call_soon_threadsafe(self._task.cancel)
        with contextlib.suppress(TimeoutError, CancelledError):
            self._done.result(timeout=timeout)
        self._host.stop(max(0.0, deadline - time.monotonic()))


def check_alive(worker: WorkerThread, stopped: asyncio.Task[None]) -> None:
    """Raise WorkerDiedError (and give up waiting for ``stopped``) when the worker has ended:
    uploads would pile up unscanned without anyone noticing, so the process stops loudly."""
    if not worker.alive:
        stopped.cancel()
        raise WorkerDiedError(f"the scan worker stopped: {worker.error!r}")


async def run_worker(store: ConfigStore, api_url: str, metrics: Address | None = None,
                     name: str | None = None) -> None:
    """``ssftp worker``: the watcher and flows only, with hot reload, until SIGINT/SIGTERM;
    ``/metrics`` and ``/healthz`` on ``metrics`` when given (its Prefect check asks
    ``api_url``); ``name`` is the worker's (``--name``; ``<host>.<pid>`` by default).

    The scan worker runs on a thread of its own, as in ``ssftp up``, so the main thread keeps
    SIGTERM: Prefect's flow engine takes SIGTERM over while a flow runs on the main thread
    (its handler raises TerminationSignal), and a ``docker stop`` during a scan or a
    notification crashed the worker with exit 1 instead of stopping it."""
    worker = WorkerThread(store, None, name or default_name())
    worker.start()
    watch = asyncio.create_task(store.watch())
    checks = {**worker.engine_checks(), "signatures": worker.signatures_status,
              "prefect": lambda: up_or_down(is_healthy(api_url))}
    try:
        with metrics_listening(metrics, checks):
            stopped = asyncio.create_task(run_until_stopped(lambda: store.ask("SIGHUP")))
            await asyncio.sleep(0)  # its handlers take SIGINT before "started" is said
            log_event(logger, "scan worker started", staging=str(store.layout.staging),
                      worker=worker.name)
            while not stopped.done():
                await asyncio.wait([stopped, watch], timeout=1,
                                   return_when=asyncio.FIRST_COMPLETED)
                if watch.done():
                    stopped.cancel()
                    watch.result()
                check_alive(worker, stopped)
    finally:
        # Bounded like ``ssftp up``'s stop; Prefect's workers are flushed while the API
        # answers, or Python's exit would wait on them for as long as it does not.
        deadline = StopDeadline()
        deadline.arm("stopping the scan worker")
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await asyncio.to_thread(worker.stop, WORKER_STOP_SECONDS)
        deadline.step("flushing Prefect's log and event workers")
        await asyncio.to_thread(flush_prefect_workers)
        deadline.step("exiting (Python's exit handlers)")
        log_event(logger, "scan worker stopped")
