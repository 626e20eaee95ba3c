"""The staging queue's policy: which staged files are scanned, when, and with which others.

Two of DESIGN's invariants rest on it. "A file is scanned only once it is complete": a
changed file waits in :mod:`ssftp.scan.readiness` until it stops changing. "A crash loses nothing":
the claims a dead scanner left are taken over, and a file that comes back from its run
unscanned (a timeout, a clamd error) or whose run failed is retried after
:mod:`ssftp.retry_schedule`'s backoff, its attempts counted across batches. Files that become
ready close together share one scan run, so a thousand small files do not cost a thousand flow
runs.

A big file must not hold up the others: hashing and scanning it takes seconds (a sparse upload
can claim terabytes for one byte sent). So files of ``largeFileSize`` and more are batched in a
lane of their own (:class:`Lane`), whose runs go beside those of the small files; and within a
batch the smallest files come first, so no small file waits in a slice behind a big one. Two
lanes, not a run per file. How many runs each lane has in flight (:func:`runs_at_once`) depends
on the Prefect server's database: SQLite turns concurrent writers away (its client retries
after 2 s), so on it one run per lane, and runs overlap only when there is a big file to keep
out of the way; PostgreSQL takes them side by side. Either way a file is in one run at a time:
the queue hands it out once, and holds it back (a walk finds it still in staging, a partner
uploads it again under the same name) until its run has ended.

When clamd cannot be reached at all, retrying each file on its own schedule only fails again,
and writes an audit record and raises a webhook each time. So the queue enters an outage: every
file that failed waits (a file that arrives meanwhile gets its one first attempt, so it too has
its record and its ``scanError``), clamd is probed with PING on the backoff schedule (but at
least every :data:`PROBE_MAX_SECONDS`: a PING is cheap, and clamd back must not wait for
``retryMaxSeconds``), and the waiting files are retried together once it answers. One outage
is thus one failed attempt per file: one audit record, one ``scanError``.

Several workers on one data root batch only their own share of the ready files (a
:class:`ssftp.scan.workers.Share`), and another's once nobody has taken it for a few seconds.

Time comes from an injected clock and file state from an injected stamp function, so the policy
is tested with a fake clock in milliseconds; the watcher in ``deployments`` does the I/O
(inotify events, walks of staging, the runs) and tells the queue what it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, NamedTuple

from ssftp.config.schema import ScanningSettings
from ssftp.layout import is_pending_name, is_reserved_name
from ssftp.metrics import STAGING_FILES
from ssftp.retry_schedule import RetrySchedule, backoff_delay
from ssftp.scan.claims import sub_path_of
from ssftp.scan.readiness import ReadinessTracker, StampOf, regular_file_stamp
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.workers import Share

# The longest wait between two PINGs of an outage (unless retryInitialSeconds is longer).
PROBE_MAX_SECONDS = 30.0


def is_candidate(staging: Path, path: Path) -> bool:
    """True for a path the scanner may take: not ssftp's own (in no reserved directory), not
    an upload in progress. Only a file's own name marks an upload in progress: a directory
    named like a client's temp file (``x.filepart/``) is a directory like any other, whose
    files are scanned (they would otherwise wait, unscanned and never swept, for ever)."""
    try:
        parts = path.relative_to(staging).parts
    except ValueError:
        return False
    return (bool(parts) and not any(map(is_reserved_name, parts[:-1]))
            and not is_pending_name(parts[-1]))


class Lane(StrEnum):
    """Which scan runs a file goes in (each lane has its own runs in flight)."""

    SMALL = "small"
    # ``largeFileSize`` and more: seconds each, kept out of the way of the small files.
    LARGE = "large"


class PrefectDatabase(StrEnum):
    """The database behind the Prefect server, which decides how many runs write at once."""

    SQLITE = "SQLite"
    POSTGRESQL = "PostgreSQL"


# Runs in flight per lane when ``concurrentRuns`` is ``auto``. SQLite: one, see the module's
# doc. PostgreSQL: a few, enough to scan one batch while others are being created and
# reported (each run's Prefect calls take longer than scanning a small batch); more only
# queue in clamd, whose threads the runs' scan threads (flows.scan) already fill.
AUTO_RUNS = {PrefectDatabase.SQLITE: 1, PrefectDatabase.POSTGRESQL: 4}


@dataclass(frozen=True)
class RunsAtOnce:
    """How many runs each lane may have in flight, and why (for the log)."""

    count: int
    reason: str


def runs_at_once(setting: int | Literal["auto"], database: PrefectDatabase | None) -> RunsAtOnce:
    """``scanning.concurrentRuns`` for a Prefect server on ``database`` (None: a server this
    process did not start, whose database it cannot learn: the Prefect API hides its database
    URL, so one run, the choice that is right on either)."""
    if setting != "auto":
        return RunsAtOnce(setting, "scanning.concurrentRuns")
    if database is None:
        return RunsAtOnce(AUTO_RUNS[PrefectDatabase.SQLITE],
                          "the Prefect server's database is unknown; set "
                          "scanning.concurrentRuns when it is PostgreSQL")
    return RunsAtOnce(AUTO_RUNS[database], f"Prefect on {database}")


class _Ready(NamedTuple):
    lane: Lane
    size: int


@dataclass
class _Outage:
    """clamd stopped answering at ``started``; ``failures`` in a row so far (the scans that
    found it down, then each PING it did not answer)."""

    started: float
    failures: int
    next_probe: float


@dataclass(frozen=True)
class OutageEnded:
    """clamd answered again after ``seconds``; ``files`` had waited for it."""

    seconds: float
    files: int


class StagingQueue:
    """Files on their way from "seen in staging" to "in a scan run".

    ``settings`` is called each time the queue decides, so a config reload applies to files
    already waiting.
    """

    def __init__(self, staging: Path, settings: Callable[[], ScanningSettings],
                 clock: Callable[[], float] = time.monotonic,
                 stamp_of: StampOf = regular_file_stamp, share: Share | None = None) -> None:
        self._staging = staging
        # This worker's share of the files, when workers share a data root (none: all).
        self.share = share
        self._settings = settings
        self._clock = clock
        current = settings()
        self._stamp_of = stamp_of
        self.tracker = ReadinessTracker(current.stable_seconds, stamp_of,
                                        rename_grace_seconds=current.rename_grace_seconds)
        self.retries = RetrySchedule(current.retry_initial_seconds, current.retry_max_seconds)
        # The files ready to scan, in the order they became ready (a path queued twice is
        # scanned once), with the lane and size they had then.
        self._batch: dict[Path, _Ready] = {}
        # When each lane's batch window opened (its first file became ready).
        self._started: dict[Lane, float] = {}
        self._ready_now: list[Path] = []
        # Where the files of the runs in flight were staged: handed out once, each is held
        # back until its run has ended.
        self._in_flight: set[Path] = set()
        self._outage: _Outage | None = None
        # Counted when scraped, from the queue itself: there is no second count to drift.
        STAGING_FILES.set_function(self.waiting_files)

    def waiting_files(self) -> int:
        """Files the queue holds: changing, ready, batched, or waiting for a retry (or for
        clamd); not those a run is scanning now. Only lengths: safe from a scrape's thread."""
        return len(self.tracker) + len(self._ready_now) + len(self._batch) + len(self.retries)

    def due_files(self) -> int:
        """Files settling, ready or batched: fresh work, which a rescan gives way to (not
        the retries, which may wait for hours). Only lengths: safe from another thread."""
        return len(self.tracker) + len(self._ready_now) + len(self._batch)

    def saw(self, path: Path) -> None:
        """A change was reported for ``path``: it is scanned once it has stopped changing."""
        self.tracker.saw(path, self._clock())

    def forget(self, path: Path) -> None:
        """``path`` was deleted before it was ready (or claimed by the worker whose share
        it is in)."""
        self.tracker.forget(path)
        if self.share is not None:
            self.share.forget(path)

    def take_over(self, paths: list[Path]) -> int:
        """Queue files claimed by a scanner that stopped: they were complete when it took
        them, so they skip the readiness wait. The watcher looks for them again and again
        until they are claimed anew, so one already queued, in a run, put aside for its owner
        or waiting for a retry keeps its place. Returns how many were queued now."""
        now = self._clock()
        taken = [path for path in dict.fromkeys(paths)
                 if path not in self._ready_now and self._unnoticed(path, now)]
        self._ready_now += taken
        return len(taken)

    def walked(self, found: list[Path]) -> None:
        """A walk of staging found these files: queue the ones nothing has noticed yet (events
        get lost); files already queued, in a run not yet at them, or waiting for a retry
        keep their place."""
        now = self._clock()
        for path in found:
            if self._unnoticed(path, now):
                self.tracker.saw(path, now)

    def _unnoticed(self, path: Path, now: float) -> bool:
        """Whether nothing in the queue holds ``path`` (staged or claimed) yet: not settling,
        batched, in a run (by where it was staged), waiting for a retry or for its owner."""
        return (path not in self.tracker and path not in self._batch
                and self._origin(path) not in self._in_flight
                and not self.retries.waiting(path, now)
                and (self.share is None or path not in self.share))

    def collect(self) -> None:
        """Add what has become ready, and what is due for a retry, to the next batch. Called
        often, also while a run scans, so the next batch's window starts when its first file is
        ready rather than when the run ends."""
        now = self._clock()
        settings = self._settings()
        self.tracker.stable_seconds = settings.stable_seconds
        self.tracker.rename_grace_seconds = settings.rename_grace_seconds
        self.retries.initial_seconds = settings.retry_initial_seconds
        self.retries.max_seconds = settings.retry_max_seconds
        ready = self._ready_now + self.retries.due(now) + [
            path for path in self.tracker.ready(now) if not self.retries.waiting(path, now)]
        self._ready_now = []
        for path in [path for path in ready if self._origin(path) in self._in_flight]:
            # Its run has it (or had it, and it came back): looked at again after the run.
            ready.remove(path)
            self.tracker.saw(path, now)
        if self.share is not None:
            ready = self.share.take(ready, now)
        for path in ready:
            size = self._size_of(path)
            lane = Lane.LARGE if size >= settings.large_file_size else Lane.SMALL
            self._started.setdefault(lane, now)
            self._batch[path] = _Ready(lane, size)

    def take_batch(self, lane: Lane) -> list[Path]:
        """The lane's next batch once it is full or its window has passed, else nothing.

        Its files are the first to have become ready (a stream of small files cannot starve a
        bigger one), and in it the smallest go first. They are in flight until the run ends
        (:meth:`scanned`, :meth:`run_failed`).
        """
        started = self._started.get(lane)
        if started is None:
            return []
        settings = self._settings()
        queued = [path for path, ready in self._batch.items() if ready.lane is lane]
        if not queued:  # they left meanwhile (a file failed and waits for its retry)
            del self._started[lane]
            return []
        now = self._clock()
        full = len(queued) >= settings.max_batch_files
        if not full and now - started < settings.batch_window_seconds:
            return []
        batch = sorted(queued[:settings.max_batch_files], key=lambda path: self._batch[path].size)
        for path in batch:
            del self._batch[path]
            self._in_flight.add(self._origin(path))
        if len(queued) > len(batch):
            self._started[lane] = now
        else:
            del self._started[lane]
        return batch

    def _size_of(self, path: Path) -> int:
        """The size the file's lane is chosen by; a file gone meanwhile is found gone by the
        scanner at once, in either lane."""
        stamp = self._stamp_of(path)
        return 0 if stamp is None else stamp.size

    def run_failed(self, paths: list[Path]) -> None:
        """The run itself failed (e.g. the Prefect API is unreachable): ``paths`` (its batch
        and whatever it had claimed) are retried after a backoff."""
        now = self._clock()
        for path in paths:
            self._in_flight.discard(self._origin(path))
            self.retries.failed(path, now, self._origin(path))
        self._hold_during_outage()

    def scanned(self, batch: list[Path], results: list[ScanResult]) -> None:
        """A run of ``batch`` ended with ``results``: a file still in staging could not be
        scanned and is retried after a backoff (or, when clamd could not be reached, once
        clamd answers again); a file that is done with starts from zero again."""
        now = self._clock()
        failed = {self._staging.parent / result.destination: result
                  for result in results if result.area is Area.STAGING}
        failed_files = {self._origin(where) for where in failed}
        for path in batch:
            self._in_flight.discard(self._origin(path))
            if (origin := self._origin(path)) not in failed_files:
                self.retries.succeeded(path, origin)
        for where in failed:
            self.retries.failed(where, now, self._origin(where))
            # Its release back into staging raised an event, maybe seen before the run ended:
            # it waits for its retry like any file that failed.
            self._batch.pop(where, None)
            self.tracker.forget(where)
        if self._outage is None and any(r.clamd_unreachable for r in failed.values()):
            self._outage = _Outage(started=now, failures=1,
                                   next_probe=now + self._probe_delay(failures=1))
        self._hold_during_outage()

    def _origin(self, path: Path) -> Path:
        """Where a staged or claimed file was staged: what its attempts are counted by."""
        return self._staging / sub_path_of(self._staging, path)

    @property
    def in_outage(self) -> bool:
        """True from a scan that could not reach clamd until a PING it answers."""
        return self._outage is not None

    def probe_due(self) -> bool:
        """True when clamd should be asked (PING) whether it is back."""
        return self._outage is not None and self._clock() >= self._outage.next_probe

    def probed(self, answered: bool) -> OutageEnded | None:
        """The PING's outcome: answered ends the outage (its files are due at once), else the
        next PING waits twice as long, up to :data:`PROBE_MAX_SECONDS`."""
        if self._outage is None:
            return None
        now = self._clock()
        if answered:
            ended = OutageEnded(now - self._outage.started, self.retries.release_held(now))
            self._outage = None
            return ended
        self._outage.failures += 1
        self._outage.next_probe = now + self._probe_delay(self._outage.failures)
        return None

    def _probe_delay(self, failures: int) -> float:
        return min(self._backoff(failures),
                   max(PROBE_MAX_SECONDS, self.retries.initial_seconds))

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.retries.initial_seconds, self.retries.max_seconds)

    def _hold_during_outage(self) -> None:
        if self._outage is not None:
            self.retries.hold_all()
