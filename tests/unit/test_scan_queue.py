"""ssftp.scan.queue's policy without inotify or waits: which staged files are candidates,
readiness, batching, retry backoff, outages and config reloads, driven by a fake clock and
fake file stamps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

from deployments.staging_watcher import staged_files
from ssftp.config.schema import ScanningSettings
from ssftp.file_stamp import FileStamp
from ssftp.layout import (
    CLAIMS_DIR,
    PARTIALS_DIR,
)
from ssftp.scan.claims import sub_path_of
from ssftp.scan.queue import (
    PROBE_MAX_SECONDS,
    Lane,
    OutageEnded,
    PrefectDatabase,
    RunsAtOnce,
    StagingQueue,
    is_candidate,
    runs_at_once,
)
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.workers import Share, owner_of

STAGING = Path("/data/staging")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def failed_attempts(queue: StagingQueue, *names: str) -> dict[str, int]:
    """The failed attempts in a row the queue counts for the files staged as ``names``: what
    its backoff goes by."""
    return {name: queue.retries.attempts(STAGING / name) for name in names}


class Harness:
    """A queue over fake files (path -> stamp) and a fake clock; ``settings`` may be replaced
    at any time, as a config reload does."""

    def __init__(self, **settings: float) -> None:
        self.clock = Clock()
        self.files: dict[Path, FileStamp] = {}
        self.settings = ScanningSettings.model_validate(settings)
        self.queue = StagingQueue(STAGING, lambda: self.settings, clock=self.clock,
                                  stamp_of=self.files.get)
        self._inodes = iter(range(1, 1_000_000))

    def stage(self, sub_path: str, size: int = 10) -> Path:
        path = STAGING / sub_path
        self.files[path] = FileStamp(next(self._inodes), size, int(self.clock() * 1e9))
        return path

    def grow(self, path: Path) -> None:
        old = self.files[path]
        self.files[path] = FileStamp(old.inode, old.size + 1, int(self.clock() * 1e9))

    def reload(self, **changes: float) -> None:
        self.settings = self.settings.model_copy(update=changes)

    def after(self, seconds: float, lane: Lane = Lane.SMALL) -> list[Path]:
        """Let ``seconds`` pass, then what the watcher's loop would start a run of ``lane``
        with."""
        self.clock.advance(seconds)
        self.queue.collect()
        return self.queue.take_batch(lane)


def back_in_staging(path: Path) -> ScanResult:
    """The result of a file clamd could not scan: it went back to staging."""
    sub_path = path.relative_to(STAGING).as_posix()
    return ScanResult(file=sub_path, account="partner-a", size=10, sha256=None,
                      verdict="error", signature=None, detail="clamd is not answering",
                      source=f"staging/{sub_path}", destination=f"staging/{sub_path}",
                      area=Area.STAGING, time="2026-01-01T00:00:00.000+00:00",
                      flow_run_id="run-1")


def scanned_clean(path: Path) -> ScanResult:
    sub_path = path.relative_to(STAGING).as_posix()
    return ScanResult(file=sub_path, account="partner-a", size=10, sha256="0" * 64,
                      verdict="clean", signature=None, detail="OK",
                      source=f"staging/{sub_path}", destination=f"clean/{sub_path}",
                      area=Area.CLEAN, time="2026-01-01T00:00:00.000+00:00",
                      flow_run_id="run-1")


def test_a_file_unchanged_for_stable_seconds_is_queued() -> None:
    harness = Harness(stableSeconds=1.0, batchWindowSeconds=0)
    path = harness.stage("partner-a/f.txt")
    harness.queue.saw(path)
    assert harness.after(0.9) == []
    assert harness.after(0.1) == [path]
    assert harness.after(10.0) == []


def test_a_file_that_changed_waits_again() -> None:
    harness = Harness(stableSeconds=1.0, batchWindowSeconds=0)
    path = harness.stage("partner-a/growing.bin")
    harness.queue.saw(path)
    harness.clock.advance(0.5)
    harness.grow(path)  # a writer that raises no event (or whose event was lost)
    assert harness.after(0.5) == []  # changed: stable again only from now on
    assert harness.after(0.9) == []
    assert harness.after(0.1) == [path]


def test_a_vanished_or_deleted_file_is_dropped() -> None:
    harness = Harness(stableSeconds=1.0, batchWindowSeconds=0)
    vanished = harness.stage("partner-a/vanished.txt")
    deleted = harness.stage("partner-a/deleted.txt")
    harness.queue.saw(vanished)
    harness.queue.saw(deleted)
    del harness.files[vanished]
    harness.queue.forget(deleted)
    assert harness.after(10.0) == []
    assert len(harness.queue.tracker) == 0


def test_claims_taken_over_skip_the_readiness_wait() -> None:
    harness = Harness(stableSeconds=60.0, batchWindowSeconds=0)
    orphan = harness.stage("partner-a/claimed-by-a-dead-scanner.txt")
    harness.queue.take_over([orphan])
    assert harness.after(0.0) == [orphan]


def test_a_claim_taken_over_every_beat_is_handed_out_once() -> None:
    """The watcher offers a dead scanner's claims every second until they are claimed anew:
    one queued, in a run, put aside for another worker or waiting for a retry is not queued
    again (nor is one staged and settling)."""
    harness = Harness(stableSeconds=60.0, batchWindowSeconds=0)
    orphan = harness.stage(f"{CLAIMS_DIR}/dead.1.2/0-ab/partner-a/held.txt")
    assert harness.queue.take_over([orphan, orphan]) == 1
    assert harness.queue.take_over([orphan]) == 0  # queued already
    assert harness.after(0.0) == [orphan]
    assert harness.queue.take_over([orphan]) == 0  # in a run
    harness.queue.scanned([orphan], [back_in_staging(orphan)])
    assert harness.queue.take_over([orphan]) == 0  # waiting for its retry
    staged = harness.stage("partner-a/settling.txt")
    harness.queue.saw(staged)
    assert harness.queue.take_over([staged]) == 0
    theirs = Harness(stableSeconds=0, batchWindowSeconds=0)
    theirs.queue.share = Share("a", lambda path: sub_path_of(STAGING, path).as_posix())
    theirs.queue.share.workers = ("a", "b")
    others = [path for path in (theirs.stage(f"{CLAIMS_DIR}/dead.1.2/{n}-ab/partner-a/{n}")
                                for n in range(10))
              if owner_of(sub_path_of(STAGING, path).as_posix(), ["a", "b"]) == "b"]
    assert theirs.queue.take_over(others) == len(others) > 0
    assert theirs.after(0.0) == []  # put aside for b
    assert theirs.queue.take_over(others) == 0


# --- batching -------------------------------------------------------------------------------


def test_files_ready_within_the_window_share_a_batch() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0.25)
    first, second, late = (harness.stage(f"partner-a/{name}") for name in ("1", "2", "late"))
    harness.queue.saw(first)
    assert harness.after(0.0) == []  # the window opens when the first file is ready
    harness.queue.saw(second)
    assert harness.after(0.2) == []
    assert harness.after(0.05) == [first, second]
    harness.queue.saw(late)
    assert harness.after(0.0) == []  # a new window
    assert harness.after(0.25) == [late]


def test_a_full_batch_starts_at_once_and_the_rest_waits_its_window() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=10, maxBatchFiles=2)
    paths = [harness.stage(f"partner-a/{number}") for number in range(3)]
    for path in paths:
        harness.queue.saw(path)
    assert harness.after(0.0) == paths[:2]
    assert harness.after(9.9) == []
    assert harness.after(0.1) == paths[2:]


def test_a_file_queued_twice_is_scanned_once() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0)
    path = harness.stage("partner-a/f.txt")
    harness.queue.saw(path)
    harness.queue.saw(path)
    harness.queue.take_over([path, path])
    assert harness.after(0.0) == [path]
    assert harness.after(1.0) == []


def test_a_file_in_a_run_is_not_handed_out_again_until_its_run_has_ended() -> None:
    """With runs side by side, a file found again while its run has it (a walk of staging
    before the run reached it, a partner's upload under the same name after it was claimed)
    would go in a second run: it waits, and is handed out again only once its run ended."""
    harness = Harness(stableSeconds=0, batchWindowSeconds=0)
    path = harness.stage("partner-a/f.txt")
    harness.queue.saw(path)
    batch = harness.after(0.0)
    assert batch == [path]
    harness.queue.walked([path])  # still in staging: the run has not claimed it yet
    harness.queue.saw(path)  # uploaded again under the same name
    assert harness.after(1.0) == []
    assert harness.after(1.0) == []  # for as long as its run lasts
    harness.queue.scanned(batch, [scanned_clean(path)])
    assert harness.after(0.0) == [path]  # the new upload


def test_a_file_of_a_failed_run_waits_for_its_retry_not_for_another_run() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=5)
    path = harness.stage("partner-a/f.txt")
    harness.queue.saw(path)
    batch = harness.after(0.0)
    harness.queue.saw(path)  # the run's release of it back into staging, seen before it ended
    assert harness.after(0.0) == []
    harness.queue.run_failed(batch)
    assert harness.after(4.9) == []
    assert harness.after(0.1) == [path]


@pytest.mark.parametrize(("setting", "database", "expected"), [
    ("auto", PrefectDatabase.SQLITE, RunsAtOnce(1, "Prefect on SQLite")),
    ("auto", PrefectDatabase.POSTGRESQL, RunsAtOnce(4, "Prefect on PostgreSQL")),
    (2, PrefectDatabase.SQLITE, RunsAtOnce(2, "scanning.concurrentRuns")),
    (6, None, RunsAtOnce(6, "scanning.concurrentRuns")),
])
def test_runs_at_once_follows_the_prefect_database_unless_configured(
        setting: int | Literal["auto"], database: PrefectDatabase | None,
        expected: RunsAtOnce) -> None:
    assert runs_at_once(setting, database) == expected


def test_runs_at_once_on_a_server_of_unknown_database_is_one_and_says_what_to_set() -> None:
    """``ssftp worker``'s server: the Prefect API hides its database, so one run per lane
    (right on either database), and the log says how to have more."""
    chosen = runs_at_once("auto", None)
    assert chosen.count == 1
    assert "scanning.concurrentRuns" in chosen.reason


LARGE = 16 * 1024 * 1024  # largeFileSize's default


def test_large_files_are_batched_in_a_lane_of_their_own() -> None:
    """A large file takes seconds to hash and scan: its batch is its lane's, and the small
    files' batch, with a window of its own, does not include it."""
    harness = Harness(stableSeconds=0, batchWindowSeconds=0.25)
    big = harness.stage("partner-a/big.iso", size=LARGE)
    harness.queue.saw(big)
    assert harness.after(0.0, Lane.LARGE) == []
    small = harness.stage("partner-b/small.csv")
    harness.queue.saw(small)
    assert harness.after(0.25, Lane.LARGE) == [big]
    assert harness.queue.take_batch(Lane.SMALL) == []  # its window opened 0.25 s later
    assert harness.after(0.25, Lane.SMALL) == [small]
    assert harness.queue.take_batch(Lane.LARGE) == []


def test_a_batch_scans_its_smallest_files_first_but_takes_files_as_they_came() -> None:
    """Small before big within a batch, so no small file waits in a slice behind a bigger one;
    but the batch is the files that came first, so a stream of small files cannot hold a
    bigger one back for ever."""
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, maxBatchFiles=3)
    sizes = [5000, 300, 20, 1]
    paths = [harness.stage(f"partner-a/{size}.bin", size=size) for size in sizes]
    for path in paths:
        harness.queue.saw(path)
    assert harness.after(0.0) == [paths[2], paths[1], paths[0]]
    assert harness.after(0.0) == [paths[3]]


def test_a_reload_of_large_file_size_applies_to_files_that_become_ready_later() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=1)
    early, late = (harness.stage(f"partner-a/{name}", size=1000) for name in ("early", "late"))
    harness.queue.saw(early)
    assert harness.after(0.0) == []
    harness.reload(large_file_size=1000)
    harness.queue.saw(late)
    assert harness.after(1.0) == [early]
    assert harness.after(1.0, Lane.LARGE) == [late]


def test_a_file_back_in_staging_is_retried_after_the_backoff() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=5)
    unscanned, clean = harness.stage("partner-a/unscanned"), harness.stage("partner-a/clean")
    harness.queue.saw(unscanned)
    harness.queue.saw(clean)
    batch = harness.after(0.0)
    assert batch == [unscanned, clean]
    results = [back_in_staging(unscanned), scanned_clean(clean)]
    harness.queue.scanned(batch, results)
    assert failed_attempts(harness.queue, "partner-a/unscanned", "partner-a/clean") == {
        "partner-a/unscanned": 1, "partner-a/clean": 0}
    harness.queue.saw(unscanned)  # its move back into staging raised an event
    assert harness.after(4.9) == []
    assert harness.after(0.1) == [unscanned]
    assert harness.after(100.0) == []


def test_the_files_of_a_failed_run_back_off_doubling_up_to_the_cap() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=5,
                      retryMaxSeconds=30)
    path, claimed = harness.stage("partner-a/f"), harness.stage("partner-a/claimed")
    for delay in (5.0, 10.0, 20.0, 30.0, 30.0):
        harness.queue.run_failed([path, claimed])
        assert harness.after(delay - 0.1) == []
        assert harness.after(0.1) == [path, claimed]


def test_a_resweep_queues_only_files_nothing_has_noticed() -> None:
    harness = Harness()
    queue = harness.queue
    noticed = harness.stage("partner-a/noticed.txt")
    missed = harness.stage("partner-a/missed.txt")  # its event was lost
    retrying = harness.stage("partner-a/retrying.txt")  # clamd was down
    queue.tracker.saw(noticed, now=0.0)
    queue.retries.failed(retrying, now=harness.clock())
    queue.walked([noticed, missed, retrying])
    assert missed in queue.tracker
    assert retrying not in queue.tracker
    # Already tracked: keeps its first sighting, so a resweep never delays a file.
    assert queue.tracker.ready(now=queue.tracker.stable_seconds) == [noticed]


def test_a_resweep_leaves_batched_files_in_their_batch() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=1)
    path = harness.stage("partner-a/f.txt")
    harness.queue.saw(path)
    assert harness.after(0.0) == []
    harness.queue.walked([path])
    assert path not in harness.queue.tracker
    assert harness.after(1.0) == [path]


def test_an_event_does_not_bring_a_retry_forward() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=5)
    path = harness.stage("partner-a/f.txt")
    harness.queue.run_failed([path])
    harness.queue.saw(path)
    assert harness.after(1.0) == []
    assert harness.after(4.0) == [path]


# --- config reloads -------------------------------------------------------------------------


@pytest.mark.parametrize("held_by, released", [
    ({"stableSeconds": 60, "batchWindowSeconds": 0}, {"stable_seconds": 0.5}),
    ({"stableSeconds": 0, "batchWindowSeconds": 60}, {"batch_window_seconds": 0.5}),
    ({"stableSeconds": 0, "batchWindowSeconds": 60, "maxBatchFiles": 2}, {"max_batch_files": 1}),
])
def test_a_reload_applies_to_files_already_waiting(held_by: dict[str, float],
                                                    released: dict[str, float]) -> None:
    harness = Harness(**held_by)
    path = harness.stage("partner-a/f.txt")
    harness.queue.saw(path)
    assert harness.after(0.0) == []
    assert harness.after(1.0) == []
    harness.reload(**released)
    assert harness.after(0.0) == [path]


def test_the_rename_grace_comes_from_the_settings_and_follows_a_reload() -> None:
    harness = Harness(renameGraceSeconds=0.3)
    assert harness.queue.tracker.rename_grace_seconds == 0.3
    harness.reload(rename_grace_seconds=0.1)
    harness.queue.collect()
    assert harness.queue.tracker.rename_grace_seconds == 0.1


def test_a_reload_changes_the_backoff_of_files_that_fail_later() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=5)
    path = harness.stage("partner-a/f.txt")
    harness.reload(retry_initial_seconds=1.0)
    harness.queue.collect()  # a reload takes effect when the queue next collects
    harness.queue.run_failed([path])
    assert harness.after(0.9) == []
    assert harness.after(0.1) == [path]


def test_attempts_survive_batches_and_the_backoff_doubles() -> None:
    """A file that fails batch after batch counts up (main reset it to attempt 1 each time, so
    it was retried every retryInitialSeconds and raised a scanError each time)."""
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=1,
                      retryMaxSeconds=4)
    path = harness.stage("partner-a/f")
    harness.queue.saw(path)
    batch = harness.after(0.0)
    for attempt, delay in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)):
        harness.queue.scanned(batch, [back_in_staging(path)])
        assert failed_attempts(harness.queue, "partner-a/f") == {"partner-a/f": attempt}
        assert harness.after(delay - 0.1) == []
        batch = harness.after(0.1)
        assert batch == [path]


# --- a clamd outage -------------------------------------------------------------------------


def unreachable(path: Path) -> ScanResult:
    """The result of a file whose scan could not connect to clamd at all."""
    return replace(back_in_staging(path), detail="cannot scan with clamd", clamd_unreachable=True)


def test_an_unreachable_clamd_holds_the_failed_files_until_a_ping_answers() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=1,
                      retryMaxSeconds=8)
    queue = harness.queue
    first, second = harness.stage("partner-a/1"), harness.stage("partner-a/2")
    queue.saw(first)
    queue.saw(second)
    batch = harness.after(0.0)
    assert not queue.in_outage
    queue.scanned(batch, [unreachable(first), unreachable(second)])
    assert failed_attempts(queue, "partner-a/1", "partner-a/2") == {
        "partner-a/1": 1, "partner-a/2": 1}
    assert queue.in_outage
    # PINGs follow the backoff (1, 2, 4, 8, 8 s); the files are not tried meanwhile.
    for delay in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert harness.after(delay - 0.1) == []
        assert not queue.probe_due()
        assert harness.after(0.1) == []
        assert queue.probe_due()
        assert queue.probed(answered=False) is None
    queue.saw(first)  # an event (the release back into staging) does not bring it forward
    queue.walked([first, second])  # nor does a resweep
    assert harness.after(100.0) == []
    assert queue.probed(answered=True) == OutageEnded(seconds=123.0, files=2)
    assert not queue.in_outage and not queue.probe_due()
    assert harness.after(0.0) == [first, second]
    # Attempts still count: a failure after the outage is the second, no new scanError.
    queue.scanned([first, second], [back_in_staging(first), scanned_clean(second)])
    assert failed_attempts(queue, "partner-a/1", "partner-a/2") == {
        "partner-a/1": 2, "partner-a/2": 0}


def test_a_file_arriving_during_an_outage_gets_its_first_attempt_then_waits_too() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=1)
    queue = harness.queue
    early = harness.stage("partner-a/early")
    queue.saw(early)
    queue.scanned(harness.after(0.0), [unreachable(early)])
    late = harness.stage("partner-a/late")
    queue.saw(late)
    assert harness.after(0.5) == [late]
    queue.scanned([late], [unreachable(late)])
    assert failed_attempts(queue, "partner-a/late") == {"partner-a/late": 1}
    assert harness.after(50.0) == []
    queue.probed(answered=True)
    assert set(harness.after(0.0)) == {early, late}


def test_an_outage_also_holds_files_backing_off_for_other_reasons() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=1)
    queue = harness.queue
    timed_out, down = harness.stage("partner-a/timed-out"), harness.stage("partner-a/down")
    queue.saw(timed_out)
    queue.scanned(harness.after(0.0), [back_in_staging(timed_out)])
    assert not queue.in_outage  # a file clamd did not finish is not an outage
    queue.saw(down)
    queue.scanned(harness.after(0.5), [unreachable(down)])
    assert harness.after(10.0) == []
    queue.run_failed([timed_out])  # a run that failed meanwhile waits for clamd too
    assert harness.after(10.0) == []
    queue.probed(answered=True)
    assert set(harness.after(0.0)) == {timed_out, down}


def test_probes_follow_a_reloaded_backoff_and_stop_without_an_outage() -> None:
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=1)
    queue = harness.queue
    assert queue.probed(answered=True) is None and not queue.probe_due()
    path = harness.stage("partner-a/f")
    queue.saw(path)
    queue.scanned(harness.after(0.0), [unreachable(path)])
    harness.reload(retry_initial_seconds=10.0)
    harness.after(1.0)
    queue.probed(answered=False)  # the second failure in a row: 2 x 10 s
    assert harness.after(19.9) == [] and not queue.probe_due()
    assert harness.after(0.1) == [] and queue.probe_due()


def test_probes_wait_at_most_half_a_minute_whatever_the_retry_maximum() -> None:
    """A PING is cheap: clamd back after a long outage is found within 30 s, not after
    ``retryMaxSeconds`` (600 s by default), while the files themselves still back off."""
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=10,
                      retryMaxSeconds=600)
    queue = harness.queue
    path = harness.stage("partner-a/f")
    queue.saw(path)
    queue.scanned(harness.after(0.0), [unreachable(path)])
    for delay in (10.0, 20.0, PROBE_MAX_SECONDS, PROBE_MAX_SECONDS):
        assert harness.after(delay - 0.1) == [] and not queue.probe_due()
        assert harness.after(0.1) == [] and queue.probe_due()
        queue.probed(answered=False)


def test_a_release_event_seen_while_the_run_ends_does_not_skip_the_backoff() -> None:
    """The scan moves a file it could not scan back into staging, and that event can queue it
    again before its run has ended (a run's bookkeeping takes a second or so): its result
    must still send it to the back of the backoff (seen: a second attempt 1.7 s into an
    outage, then a third)."""
    for result in (back_in_staging, unreachable):
        harness = Harness(stableSeconds=0.1, batchWindowSeconds=0, retryInitialSeconds=5)
        path = harness.stage("partner-a/f")
        harness.queue.saw(path)
        batch = harness.after(0.1)
        harness.queue.saw(path)  # released back into staging, the run still going
        harness.clock.advance(0.5)
        harness.queue.collect()  # the watcher collects while the run is in flight
        harness.queue.scanned(batch, [result(path)])
        assert harness.after(0.0) == [], result.__name__
        assert harness.after(4.0) == [], result.__name__


def test_a_file_retried_from_a_new_claim_each_time_counts_its_attempts() -> None:
    """A claimed file that cannot be released (or moved on) is retried from where it is, a new
    claim each time: its attempts are counted by the file, so it raises one first failure
    (one scanError), not one per retry."""
    harness = Harness(stableSeconds=0, batchWindowSeconds=0, retryInitialSeconds=1,
                      retryMaxSeconds=1)
    staged = harness.stage("partner-a/long.bin")
    claims = STAGING / CLAIMS_DIR / "host.1.2"
    batch = [staged]
    for attempt, slot in enumerate(("0-aa", "1-bb", "2-cc"), start=1):
        where = claims / slot / "partner-a" / "long.bin"
        result = replace(back_in_staging(staged),
                         destination=f"staging/{where.relative_to(STAGING)}")
        harness.queue.scanned(batch, [result])
        assert failed_attempts(harness.queue, "partner-a/long.bin") == {
            "partner-a/long.bin": attempt}
        batch = harness.after(1.0)
        assert batch == [where]


def test_a_directory_named_like_a_temp_file_is_a_directory(tmp_path: Path) -> None:
    """Only a file's own name marks it as in progress: the files of ``x.filepart/`` are
    scanned (they were never scanned nor swept)."""
    inner = tmp_path / "partner-a" / "x.filepart" / ".in.dir" / "inner.txt"
    inner.parent.mkdir(parents=True)
    inner.write_bytes(b"x")
    (inner.parent / "still-writing.filepart").write_bytes(b"x")
    assert is_candidate(tmp_path, inner)
    assert staged_files(tmp_path) == [inner]


def test_server_partials_are_never_scanned(tmp_path: Path) -> None:
    assert not is_candidate(tmp_path, tmp_path / "partner-a" / PARTIALS_DIR / "0123abcd")


def test_workers_sharing_staging_each_batch_their_share_and_take_what_its_owner_left() -> None:
    """Two workers see the same files: each batches its own share; a file its owner does not
    claim (a stuck worker) is batched by the other after the takeover time; one the owner
    claimed (deleted from staging) is forgotten."""
    harness = Harness(stableSeconds=1.0, batchWindowSeconds=0, maxBatchFiles=1000)
    harness.queue.share = Share("a", lambda path: sub_path_of(STAGING, path).as_posix(),
                                takeover_seconds=5.0)
    harness.queue.share.workers = ("a", "b")
    paths = [harness.stage(f"partner-a/f{n}.txt") for n in range(30)]
    for path in paths:
        harness.queue.saw(path)
    owners = {path: owner_of(sub_path_of(STAGING, path).as_posix(), ["a", "b"])
              for path in paths}
    mine = [path for path in paths if owners[path] == "a"]
    theirs = [path for path in paths if owners[path] == "b"]
    assert sorted(harness.after(1.0)) == sorted(mine)
    claimed = theirs[0]
    harness.queue.forget(claimed)  # b claimed it
    harness.queue.walked(theirs[1:])  # a sweep does not queue them again meanwhile
    assert harness.after(4.9) == []
    assert sorted(harness.after(0.1)) == sorted(theirs[1:])  # b took them not: a does
    assert harness.after(10.0) == []
