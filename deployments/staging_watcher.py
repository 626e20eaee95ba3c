"""The staging watcher: the I/O side of the staging queue (:mod:`ssftp.scan.queue`).

It tells the queue what changed in ``staging/`` (inotify, :mod:`ssftp.tree_watch`, and a
walk now and then for events that got lost), and hands each batch the queue forms to one scan
run: up to ``scanning.concurrentRuns`` runs in flight per lane (:class:`ssftp.scan.queue.Lane`,
:func:`ssftp.scan.queue.runs_at_once`: one on a Prefect server on SQLite), so a big file's run
never holds up the small files' runs. A watch that fails is logged and replaced by walks every few
seconds until it can be set up again: a name, a full queue of kernel events or a directory that
cannot be watched never stops the scanning.
What the scans owe (webhooks, events) their record step stores before each file moves: the
watcher only keeps the queue's retries. On start it sweeps staging, and on start and every
second it takes over claims left by a scanner that died, so a crash loses nothing and leaves
no file waiting for the next start.
During a clamd outage it sends the PINGs the queue asks for, and logs the outage's start and
end once each.
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

from ssftp.config.schema import ScanningSettings
from ssftp.errors import RunResultsLostError
from ssftp.layout import is_reserved_name
from ssftp.logs import APP, log_event
from ssftp.scan.claims import HEARTBEAT_SECONDS, Claims, sub_path_of
from ssftp.scan.engines import Engine
from ssftp.scan.queue import (
    Lane,
    PrefectDatabase,
    RunsAtOnce,
    StagingQueue,
    is_candidate,
    runs_at_once,
)
from ssftp.scan.results import ScanResult
from ssftp.scan.workers import BEAT_SECONDS, Heartbeats, Share
from ssftp.tree_watch import Change, Kind, TreeWatch, keep_watching

logger = logging.getLogger(APP)

ScanBatch = Callable[[list[Path], Lane], Awaitable[list[ScanResult]]]
# The engines the scans use now (they change on a config reload); None with scanning off.
CurrentClamd = Callable[[], Engine | None]

_TICK_SECONDS = 0.05
# Staging is walked again this often, a safety net for events that got lost.
RESWEEP_SECONDS = 300.0
# While the watch is down (it failed, or cannot see everything) staging is walked this often,
# and the watch is set up again this often.
UNWATCHED_SWEEP_SECONDS = 2.0
REWATCH_SECONDS = 60.0
# How long a stop waits for the scan runs under way, asked to stop by then, to finish the file
# in hand and report (flows.stopping) before it cancels them: within the worker's part of the
# stop (deployments.worker.WORKER_STOP_SECONDS).
RUNS_STOP_SECONDS = 4.0


def staged_files(staging: Path, below: Path | None = None) -> list[Path]:
    """Every candidate file below ``below`` (default: all of staging)."""
    found = []
    for directory, dirs, names in os.walk(below or staging):
        dirs[:] = [d for d in dirs if not is_reserved_name(d)]
        found += [path for name in names
                  if is_candidate(staging, path := Path(directory, name))]
    return found


@dataclass
class StagingWatcher:
    staging: Path
    claims: Claims
    settings: Callable[[], ScanningSettings]
    scan_batch: ScanBatch
    clamd: CurrentClamd
    # This worker's heartbeat among those of the data root, by which the live workers share
    # the staged files out (ssftp.scan.workers); None: this watcher takes every file.
    heartbeats: Heartbeats | None = None
    # The database of the Prefect server the runs go to, when known: how many runs
    # ``concurrentRuns: auto`` lets each lane have in flight.
    database: PrefectDatabase | None = None
    queue: StagingQueue = field(init=False)
    # The scan runs in flight in each lane, up to ``concurrentRuns`` per lane: per lane, so that
    # big files' runs never take the small files' places, and on SQLite (1: its Prefect server
    # refuses concurrent writers, and the client waits 2 s before each retry, seen in bench/)
    # a big file still has a run beside the small files'. The watcher does not wait for a run:
    # the lane's next batch is collected (readiness, batch window) while runs scan, and starts
    # as soon as the lane has room.
    _running: dict[Lane, set[asyncio.Task[None]]] = field(
        init=False, default_factory=lambda: {lane: set() for lane in Lane})
    # The runs at once last logged: said at start, and again when a reload changes it.
    _runs_said: RunsAtOnce | None = field(init=False, default=None)
    # The PING in flight during an outage (it may wait up to clamd.PING_TIMEOUT).
    _probing: asyncio.Task[None] | None = field(init=False, default=None)
    # How often staging is walked (more often while the watch is down), and whether a walk is
    # due now (the watch was set up again, or failed).
    _sweep_every: float = field(init=False, default=RESWEEP_SECONDS)
    _sweep_due: bool = field(init=False, default=False)
    _beat_failed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        share = None
        if self.heartbeats is not None:
            share = Share(self.heartbeats.name,
                          lambda path: sub_path_of(self.staging, path).as_posix())
        self.queue = StagingQueue(self.staging, self.settings, share=share)

    def busy(self) -> bool:
        """Fresh uploads are being scanned or are due: what a rescan gives way to."""
        return any(self._running.values()) or self.queue.due_files() > 0

    def sweep(self) -> None:
        """Queue what a previous run left: orphaned claims first (they were complete), then
        every file in staging (checked for completeness like any other)."""
        self._take_over(self.claims.orphaned())
        for path in staged_files(self.staging):
            self.queue.saw(path)

    def _take_over(self, orphans: list[Path]) -> None:
        """Queue the claims of scanners that no longer exist (the queue keeps those it has)."""
        if taken := self.queue.take_over(orphans):
            log_event(logger, "taking over files claimed by a scanner that stopped",
                      count=taken)

    def _changed(self, change: Change) -> None:
        if not is_candidate(self.staging, change.path):
            return
        if change.kind is Kind.DELETED:
            self.queue.forget(change.path)
        elif change.kind is Kind.DIRECTORY:
            # A directory moved in whole brings files that raise no events of their own.
            for inner in staged_files(self.staging, change.path):
                self.queue.saw(inner)
        else:
            self.queue.saw(change.path)

    async def _dispatch(self, batch: list[Path], lane: Lane) -> None:
        try:
            results = await self.scan_batch(batch, lane)
        except Exception as exc:
            if isinstance(exc, RunResultsLostError):  # it did its work: only its answer is gone
                log_event(logger, "scan run ended, its results unread; what it left in "
                          "staging is scanned again", logging.WARNING, error=str(exc),
                          files=len(batch))
            else:
                log_event(logger, "scan run failed; its files will be retried", logging.ERROR,
                          error=f"{type(exc).__name__}: {exc}", files=len(batch))
            # What the run had claimed goes back into the queue too.
            self.queue.run_failed([*batch, *self._claimed_from(batch)])
            return
        was_down = self.queue.in_outage
        self.queue.scanned(batch, results)
        if self.queue.in_outage and not was_down:
            log_event(logger, "scanning does not answer; it waits for it", logging.WARNING,
                      engines=self._clamd_name(),
                      files=sum(result.clamd_unreachable for result in results))
        # Claims taken over from a dead scanner leave its directories behind, now empty.
        self.claims.remove_empty_orphans()

    def _claimed_from(self, batch: list[Path]) -> list[Path]:
        """This process's claims of ``batch``'s files (a run that failed half-way leaves them
        claimed); not those of the other runs, which may be scanning them now."""
        files = set(batch)
        return [claimed for claimed in self.claims.held()
                if claimed in files or self.staging / self.claims.sub_path_of(claimed) in files]

    async def _probe(self) -> None:
        """Ask clamd whether it is back; with scanning switched off meanwhile there is nothing
        to wait for."""
        client = self.clamd()
        answered = client is None or await asyncio.to_thread(client.ping)
        ended = self.queue.probed(answered)
        if ended is not None:
            log_event(logger, "scan resumed", engines=self._clamd_name(),
                      seconds=round(ended.seconds, 1), files=ended.files)

    def _clamd_name(self) -> str | None:
        client = self.clamd()
        return None if client is None else str(client)

    async def _watch(self) -> None:
        """Report what changes in staging, for ever; while there is no watch, staging is walked
        every UNWATCHED_SWEEP_SECONDS (and once after each new watch: a file that arrived
        before it was set up is found by one or the other; seeing it twice is harmless)."""
        await keep_watching(lambda: TreeWatch(self.staging, is_reserved_name), self._changed,
                            self._watching, "staging", "staging is walked instead",
                            UNWATCHED_SWEEP_SECONDS, REWATCH_SECONDS)

    def _watching(self, watched: bool) -> None:
        self._sweep_every = RESWEEP_SECONDS if watched else UNWATCHED_SWEEP_SECONDS
        self._sweep_due = True

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Watch and scan until cancelled; the runs under way are given
        :data:`RUNS_STOP_SECONDS` to end (a stop has asked them to) before they are cancelled
        too."""
        watch = asyncio.create_task(self._watch())
        try:
            await asyncio.sleep(0)  # the watch is set up (a synchronous start) before the sweep
            self._sweep_due = False
            self.sweep()
            if ready is not None:
                ready.set()
            last_heartbeat = last_beat = 0.0
            last_sweep = time.monotonic()
            while True:
                if time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                    # In a thread, as every 5 s: staging may be a share that hangs, and the
                    # loop's other tasks (the runs under way, a stop) must go on.
                    await asyncio.to_thread(self.claims.heartbeat)
                    last_heartbeat = time.monotonic()
                if time.monotonic() - last_beat > BEAT_SECONDS:
                    await self._beat()
                    # A scanner that died (SIGKILL, a crash) beside this one left claims: the
                    # live ones take them over now, not at the next start (the claim decides
                    # which). Another host's only after its lease (ssftp.scan.claims).
                    self._take_over(await asyncio.to_thread(self.claims.orphaned))
                    last_beat = time.monotonic()
                if self._sweep_due or time.monotonic() - last_sweep > self._sweep_every:
                    self._sweep_due = False
                    self.queue.walked(await asyncio.to_thread(staged_files, self.staging))
                    last_sweep = time.monotonic()
                self.queue.collect()
                if _finished(self._probing):
                    self._probing = None
                if self._probing is None and self.queue.probe_due():
                    self._probing = asyncio.create_task(self._probe())
                if self._start_runs():
                    continue
                await asyncio.sleep(_TICK_SECONDS)
        finally:
            if self.heartbeats is not None:  # its share goes to the others at once
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self.heartbeats.leave)
            runs = [run for lane in self._running.values() for run in lane]
            if runs:
                await asyncio.wait(runs, timeout=RUNS_STOP_SECONDS)
            for task in (*runs, self._probing, watch):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _beat(self) -> None:
        """Say this worker is live, and learn who else is: the share follows the live set.
        A beat that fails keeps the last set (the others take this worker's files once its
        heartbeat is stale, and the claim still decides)."""
        if self.heartbeats is None or self.queue.share is None:
            return
        try:
            workers = await asyncio.to_thread(self.heartbeats.beat)
        except OSError as exc:
            if not self._beat_failed:  # once, not every second
                log_event(logger, "worker heartbeat not written", logging.WARNING,
                          error=str(exc))
            self._beat_failed = True
            return
        self._beat_failed = False
        if workers != self.queue.share.workers:
            log_event(logger, "live workers changed", workers=", ".join(workers))
            self.queue.share.workers = workers

    def _start_runs(self) -> bool:
        """Start the next batches of each lane with room for more runs; True if any started."""
        most = self._runs_at_once()
        started = False
        for lane, running in self._running.items():
            running.difference_update([run for run in running if _finished(run)])
            while len(running) < most and (batch := self.queue.take_batch(lane)):
                running.add(asyncio.create_task(self._dispatch(batch, lane)))
                started = True
        return started

    def _runs_at_once(self) -> int:
        """``concurrentRuns`` as it is now (a reload applies to the next run that starts),
        logged when it changes."""
        now = runs_at_once(self.settings().concurrent_runs, self.database)
        if now != self._runs_said:
            log_event(logger, "scan runs at once", runs=now.count, reason=now.reason)
            self._runs_said = now
        return now.count


def _finished(task: asyncio.Task[None] | None) -> bool:
    """True once ``task`` has ended. A task that failed (they catch what they expect: only a
    defect gets here) stops the service rather than leave it scanning nothing."""
    if task is None or not task.done():
        return False
    task.result()
    return True
