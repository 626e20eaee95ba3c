"""deployments.staging_watcher without inotify or Prefect: which files it hands to a scan run,
what a run that fails half-way leaves to retry, and a watch the kernel refuses (staging is
walked instead)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from deployments import staging_watcher
from deployments.staging_watcher import StagingWatcher, staged_files
from ssftp.config.schema import ScanningSettings
from ssftp.errors import RunResultsLostError, WatchIncompleteError
from ssftp.layout import CLAIMS_DIR, TEMP_PREFIX
from ssftp.logs import APP
from ssftp.scan.claims import (
    Claims,
)
from ssftp.scan.queue import Lane, PrefectDatabase, is_candidate
from ssftp.scan.results import ScanResult
from ssftp.scan.workers import BEAT_SECONDS
from ssftp.tree_watch import TreeWatch
from tests.support.logs import app_log_records
from tests.support.scanning import dead_owner, stage
from tests.support.waiting import wait_for_async


class HeldRuns:
    """A scan that holds each run until the test lets them end: which batches are in flight."""

    def __init__(self) -> None:
        self.began: list[list[Path]] = []
        self.ended: list[list[Path]] = []
        self.may_end = asyncio.Event()

    async def __call__(self, batch: list[Path], lane: Lane) -> list[ScanResult]:
        self.began.append(batch)
        await self.may_end.wait()
        self.ended.append(batch)
        return []


def settled(settings: dict[str, object]) -> ScanningSettings:
    """Files ready at once, each batch at once: one file staged is one batch."""
    return ScanningSettings.model_validate({"stableSeconds": 0, "batchWindowSeconds": 0,
                                            **settings})


def arrived(watcher: StagingWatcher, layout, sub_path: str, data: bytes = b"x") -> Path:
    """A file staged and batched, as the watcher's loop would see it."""
    path = stage(layout, sub_path, data)
    watcher.queue.saw(path)
    watcher.queue.collect()
    return path


def test_a_failed_run_takes_back_its_own_claims_not_the_other_lanes(layout):
    """A run that fails half-way (its call raises: the Prefect API went away, faked here as it
    cannot be caused on cue) leaves its claims behind, and they are retried with its batch;
    the claims of the other lane's run, which may be scanning them now, are left to it."""
    claims = Claims(layout.staging)
    mine = stage(layout, "partner-a/mine.txt", b"1")
    theirs = claims.claim(stage(layout, "partner-b/big.iso", b"2"))
    claimed = []

    async def fails_half_way(batch: list[Path], lane: Lane) -> list[ScanResult]:
        claimed.append(claims.claim(mine))
        raise ConnectionError("the Prefect API went away")

    watcher = StagingWatcher(layout.staging, claims, ScanningSettings, fails_half_way,
                             lambda: None)
    asyncio.run(watcher._dispatch([mine], Lane.SMALL))
    retries, now = watcher.queue.retries, time.monotonic()
    assert retries.waiting(mine, now) and retries.waiting(claimed[0].path, now)
    assert not retries.waiting(theirs.path, now)
    assert len(retries) == 2



def test_a_run_whose_results_are_lost_is_not_logged_as_a_failed_scan(layout):
    """It scanned and moved its files; only its answer is gone. What it left in staging (here
    the whole batch, faked: a result storage that loses a result cannot be caused on cue) is
    still scanned again."""
    staged = stage(layout, "partner-a/a.txt", b"1")

    async def answer_lost(batch: list[Path], lane: Lane) -> list[ScanResult]:
        raise RunResultsLostError("the results of a run that ended COMPLETED cannot be read")

    watcher = StagingWatcher(layout.staging, Claims(layout.staging), ScanningSettings,
                             answer_lost, lambda: None)
    with app_log_records() as seen:
        asyncio.run(watcher._dispatch([staged], Lane.SMALL))
    said = [(record.levelno, record.getMessage()) for record in seen]
    assert said == [(logging.WARNING, "scan run ended, its results unread; what it left in "
                     "staging is scanned again")]
    assert watcher.queue.retries.waiting(staged, time.monotonic())


async def test_claims_of_a_scanner_that_dies_while_it_runs_are_taken_over_within_a_beat(
        layout, caplog):
    """A scanner beside this one dies holding a claim (SIGKILL: nothing releases it): the
    running watcher takes it over at its next beat, not at its next start, and says so once."""
    held = HeldRuns()
    watcher = StagingWatcher(layout.staging, Claims(layout.staging), lambda: settled({}), held,
                             lambda: None)
    ready = asyncio.Event()
    caplog.set_level(logging.INFO, logger=APP)
    with app_log_records() as seen:
        running = asyncio.create_task(watcher.run(ready))
        try:
            await asyncio.wait_for(ready.wait(), 60)
            left = layout.staging / CLAIMS_DIR / dead_owner() / "0-ab" / "partner-a" / "x.txt"
            left.parent.mkdir(parents=True)
            left.write_bytes(b"claimed when its scanner died")
            await wait_for_async("the dead scanner's claim in a run", lambda: held.began,
                                 timeout=60 + BEAT_SECONDS)
            assert held.began == [[left]]
        finally:
            held.may_end.set()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    said = "taking over files claimed by a scanner that stopped"
    assert [record.fields["count"] for record in seen  # type: ignore[attr-defined]
            if record.getMessage() == said] == [1]


async def test_a_staging_watch_that_fails_is_logged_once_and_staging_is_walked_instead(
        layout, monkeypatch):
    """The kernel refusing a watch (its max_user_watches, shared with every process of the
    machine, so not reached for real here: a fake refusal) stops no scanning: a file that
    arrives meanwhile is found by a walk and handed to a run."""
    def refused(watch: TreeWatch) -> None:
        raise WatchIncompleteError(f"{watch.root} cannot be watched: No space left on device")

    monkeypatch.setattr(TreeWatch, "start", refused)
    monkeypatch.setattr(staging_watcher, "UNWATCHED_SWEEP_SECONDS", 0.05)
    monkeypatch.setattr(staging_watcher, "REWATCH_SECONDS", 0.1)
    settings = ScanningSettings.model_validate({"stableSeconds": 0, "batchWindowSeconds": 0})
    handed: list[Path] = []

    async def scan(batch: list[Path], lane: Lane) -> list[ScanResult]:
        handed.extend(batch)
        return []

    watcher = StagingWatcher(layout.staging, Claims(layout.staging), lambda: settings, scan,
                             lambda: None)
    ready = asyncio.Event()
    with app_log_records() as seen:
        running = asyncio.create_task(watcher.run(ready))
        try:
            await ready.wait()
            arrived = stage(layout, "partner-a/arrived.txt", b"found by a walk")
            deadline = time.monotonic() + 60
            while arrived not in handed:
                assert time.monotonic() < deadline, "the file was never handed to a run"
                await asyncio.sleep(0.02)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    failures = [r for r in seen if r.getMessage().startswith("staging watch failed")]
    assert len(failures) == 1
    assert "No space left on device" in failures[0].fields["error"]  # type: ignore[attr-defined]


async def test_a_stop_lets_the_run_under_way_end_before_it_cancels_it(layout):
    """Cancelled (a stop), the watcher waits for the run in flight, which a stop has asked to
    finish the file in hand and report (flows.stopping), instead of cutting it short."""
    settings = ScanningSettings.model_validate({"stableSeconds": 0, "batchWindowSeconds": 0})
    began, may_end, ended = asyncio.Event(), asyncio.Event(), []

    async def scan(batch: list[Path], lane: Lane) -> list[ScanResult]:
        began.set()
        await may_end.wait()
        ended.extend(batch)
        return []

    watcher = StagingWatcher(layout.staging, Claims(layout.staging), lambda: settings, scan,
                             lambda: None)
    running = asyncio.create_task(watcher.run())
    staged = stage(layout, "partner-a/in-flight.txt", b"scanned while the stop waits")
    await asyncio.wait_for(began.wait(), 60)
    running.cancel()
    await asyncio.sleep(0.05)
    assert not running.done()  # still waiting for its run
    may_end.set()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert ended == [staged]


async def test_each_lane_has_up_to_concurrent_runs_in_flight(layout):
    """``concurrentRuns: 2``: a lane's second batch starts while its first scans, its third
    waits for one of them to end; the large files' lane has runs of its own beside them."""
    held = HeldRuns()
    settings = settled({"concurrentRuns": 2, "largeFileSize": 1000})
    watcher = StagingWatcher(layout.staging, Claims(layout.staging), lambda: settings, held,
                             lambda: None)
    first = arrived(watcher, layout, "partner-a/1.txt")
    assert watcher._start_runs()
    second = arrived(watcher, layout, "partner-a/2.txt")
    assert watcher._start_runs()
    third = arrived(watcher, layout, "partner-a/3.txt")
    assert not watcher._start_runs()  # the small files' lane is full
    big = arrived(watcher, layout, "partner-b/big.iso", b"x" * 1000)
    assert watcher._start_runs()
    await wait_for_async("three runs scanning", lambda: len(held.began) == 3)
    assert held.began == [[first], [second], [big]] and held.ended == []
    assert watcher.busy()
    held.may_end.set()
    await asyncio.gather(*watcher._running[Lane.SMALL])
    assert watcher._start_runs()
    await wait_for_async("the third file's run", lambda: [third] in held.began)


async def test_runs_at_once_is_logged_at_start_and_when_a_reload_changes_it(layout, caplog):
    """On PostgreSQL ``auto`` is 4, said once; a reload to 1 applies to the next run that
    starts (the runs in flight go on), and is said too."""
    caplog.set_level(logging.INFO, logger=APP)
    held = HeldRuns()
    settings = settled({})
    watcher = StagingWatcher(layout.staging, Claims(layout.staging), lambda: settings, held,
                             lambda: None, database=PrefectDatabase.POSTGRESQL)
    with app_log_records() as seen:
        arrived(watcher, layout, "partner-a/1.txt")
        assert watcher._start_runs()
        arrived(watcher, layout, "partner-a/2.txt")
        assert watcher._start_runs()
        settings = settled({"concurrentRuns": 1})
        arrived(watcher, layout, "partner-a/3.txt")
        assert not watcher._start_runs()
        assert not watcher._start_runs()
    said = [(r.fields["runs"], r.fields["reason"])  # type: ignore[attr-defined]
            for r in seen if r.getMessage() == "scan runs at once"]
    assert said == [(4, "Prefect on PostgreSQL"), (1, "scanning.concurrentRuns")]
    held.may_end.set()
    await asyncio.gather(*watcher._running[Lane.SMALL])


async def test_a_stop_lets_every_run_under_way_end(layout):
    """Every run in flight is waited for (each finishes the file in hand and reports), not
    only one per lane."""
    held = HeldRuns()
    settings = settled({"concurrentRuns": 2})
    watcher = StagingWatcher(layout.staging, Claims(layout.staging), lambda: settings, held,
                             lambda: None)
    running = asyncio.create_task(watcher.run())
    first = stage(layout, "partner-a/first.txt", b"1")
    await wait_for_async("the first run", lambda: len(held.began) == 1)
    second = stage(layout, "partner-a/second.txt", b"2")
    await wait_for_async("the second run beside it", lambda: len(held.began) == 2)
    running.cancel()
    await asyncio.sleep(0.05)
    assert not running.done()  # still waiting for its runs
    held.may_end.set()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert sorted(held.ended) == [[first], [second]]


# --- staging watcher's file filter ----------------------------------------------------------


def test_only_complete_staged_files_are_candidates(layout):
    staging = layout.staging
    wanted = [
        stage(layout, "partner-a/a.txt", b"1"),
        stage(layout, "partner-a/deep/er/b c: ü.txt", b"2"),
        stage(layout, "pulled/x.bin", b"3"),
    ]
    unwanted = [
        stage(layout, f"partner-a/{TEMP_PREFIX}0123abcd", b"upload in progress"),
        stage(layout, "partner-a/report.csv.filepart", b"WinSCP in progress"),
        stage(layout, f"partner-a/{TEMP_PREFIX}dir/inner.txt", b"in a temp dir"),
        stage(layout, f"{CLAIMS_DIR}/owner.1.2/17-0/partner-a/claimed.txt", b"being scanned"),
    ]
    assert sorted(staged_files(staging)) == sorted(wanted)
    assert all(is_candidate(staging, path) for path in wanted)
    assert not any(is_candidate(staging, path) for path in unwanted)
    assert not is_candidate(staging, staging)
    assert not is_candidate(staging, layout.clean / "partner-a" / "a.txt")
    assert sorted(staged_files(staging, staging / "partner-a" / "deep")) == [wanted[1]]
