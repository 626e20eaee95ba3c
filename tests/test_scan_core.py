"""The scan pipeline without Prefect: claims, the verdict router, the scanner against a real
clamd, staging owners, webhooks against a real HTTP receiver, the staging
watcher's file filter and the config sections the pipeline reads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import stat
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from deployments import staging_watcher
from deployments.staging_watcher import StagingWatcher, staged_files
from ssftp import logs
from ssftp.addresses import ClamdAddress
from ssftp.config import load_config
from ssftp.config.schema import ScanningSettings, SsftpConfig, Webhook
from ssftp.errors import ConfigError, WatchIncompleteError
from ssftp.layout import CLAIMS_DIR, TEMP_PREFIX, DataLayout
from ssftp.names import safe_name
from ssftp.notify.owed import owed
from ssftp.notify.webhooks import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Notification,
    WebhookError,
    deliver,
    payload,
    sign,
)
from ssftp.scan.claims import (
    FOREIGN_LEASE_SECONDS,
    Claims,
    process_owner,
    reserve_quarantine_name,
)
from ssftp.scan.clamd import ClamdClient, VerdictKind
from ssftp.scan.owners import StagingOwners
from ssftp.scan.queue import Lane, is_candidate
from ssftp.scan.record import Recorder
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.router import (
    VERDICT_RECORD_SUFFIX,
    Route,
    quarantine_names,
    record_content,
    record_path,
    route_for,
)
from ssftp.scan.scanner import Scanner
from ssftp.tree_watch import TreeWatch
from tests.conftest import CLAMD_MAX_FILE_SIZE
from tests.support import WebhookReceiver, app_log_records, tmpfs

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MODES = ["auto", "path", "fd", "stream"]
ODD_SUB_PATH = "partner-a/in dir/Q1: rapport ünï ✓.txt"


# --- helpers and fixtures -------------------------------------------------------------------



def stage(layout: DataLayout, sub_path: str, data: bytes) -> Path:
    path = layout.staging / sub_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(directory: Path) -> list[Path]:
    """Every file (or symlink) below ``directory``, sorted."""
    return sorted(p for p in directory.rglob("*") if p.is_file() or p.is_symlink())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dead_owner() -> str:
    """The owner name of a process of this host that has finished (a scanner that died)."""
    proc = subprocess.Popen(["true"])
    owner = process_owner(proc.pid)  # read while the child exists (running or a zombie)
    proc.wait()
    assert not owner.endswith(".0"), "the start time of the live child must have been read"
    return owner


def free_closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_scanner(layout: DataLayout, client: ClamdClient | None, owners: StagingOwners,
                 mode: str = "auto", recorder: Recorder | None = None) -> Scanner:
    return Scanner(layout, client, mode=mode, owners=owners, instance="gw-test",
                   claims=Claims(layout.staging), recorder=recorder)


@contextlib.contextmanager
def logging_into(log_dir: Path) -> Iterator[Path]:
    """The logs written to ``log_dir`` (its audit.log is yielded); logging is process-global,
    so it is restored afterwards, and every file handler is closed (a tmpfs can be unmounted)."""
    names = (logs.APP, logs.TRANSFER, logs.AUDIT, "asyncssh")
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate)
        logger.handlers = []  # so configure_logging does not close the handlers of others
    logs.configure_logging([log_dir], stdout=False)
    try:
        yield log_dir / "audit.log"
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                handler.close()
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate


@pytest.fixture
def audit_log(layout):
    """The audit log of ``layout``."""
    with logging_into(layout.log) as path:
        yield path


def audit_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def non_utf8_path(directory: Path, name: bytes) -> Path:
    """A file name that is not valid UTF-8 (e.g. Latin-1 from a cp onto the share)."""
    return Path(os.fsdecode(os.fsencode(directory) + b"/" + name))


# --- claims ---------------------------------------------------------------------------------


def test_process_owner_names_host_pid_and_start_time():
    owner = process_owner()
    host, pid, started = owner.rsplit(".", 2)
    assert host == socket.gethostname()
    assert int(pid) == os.getpid()
    assert started.isdigit() and started != "0"
    assert process_owner(os.getpid()) == owner


def test_claim_takes_the_file_and_frees_its_name(layout):
    staged = stage(layout, "partner-a/report.csv", b"claimed bytes")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    assert claim is not None
    assert claim.origin == staged
    assert claim.sub_path == PurePosixPath("partner-a/report.csv")
    parts = claim.path.relative_to(layout.staging).parts
    assert parts[0] == CLAIMS_DIR and parts[1] == process_owner()
    assert parts[3:] == ("partner-a", "report.csv")
    assert not staged.exists()

    staged.write_bytes(b"a newer upload")  # the name is free for a new file
    assert claim.path.read_bytes() == b"claimed bytes"
    assert staged.read_bytes() == b"a newer upload"
    assert area.held() == [claim.path]


def test_claims_of_the_same_sub_path_never_collide(layout):
    area = Claims(layout.staging)
    claims = []
    for number in range(5):
        staged = stage(layout, "partner-a/same.txt", f"version {number}".encode())
        claims.append(area.claim(staged))
    assert len({claim.path for claim in claims}) == 5
    assert [claim.path.read_bytes() for claim in claims] == [
        f"version {number}".encode() for number in range(5)]
    assert sorted(area.held()) == sorted(claim.path for claim in claims)


def test_claim_of_a_vanished_file_is_none_and_leaves_nothing(layout):
    area = Claims(layout.staging)
    assert area.claim(layout.staging / "partner-a" / "deep" / "gone.txt") is None
    assert area.held() == []
    assert not list(area.directory.rglob("*"))


def test_claim_refuses_a_path_that_is_not_a_staged_file(layout):
    area = Claims(layout.staging)
    with pytest.raises(ValueError, match="is not a file below"):
        area.claim(layout.staging / CLAIMS_DIR / "someone" / "slot")
    with pytest.raises(ValueError):
        area.claim(layout.clean / "partner-a" / "x.txt")


def test_release_puts_the_file_back_when_its_name_is_free(layout):
    staged = stage(layout, "partner-a/deep/er/file.bin", b"\x00bytes\xff")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    staged.parent.rmdir()  # its directory may even have gone meanwhile
    assert claim.release() == staged
    assert staged.read_bytes() == b"\x00bytes\xff"
    assert staged.stat().st_nlink == 1
    assert not claim.path.exists()
    assert area.held() == []
    assert not list(area.directory.rglob("*"))  # the claim's directories are pruned


def test_release_never_replaces_a_newer_upload(layout):
    staged = stage(layout, "partner-a/file.txt", b"older")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    staged.write_bytes(b"newer")
    assert claim.release() == claim.path
    assert staged.read_bytes() == b"newer"
    assert claim.path.read_bytes() == b"older"
    assert area.held() == [claim.path]


def test_sub_path_of_staged_and_claimed_paths(layout):
    area = Claims(layout.staging)
    assert area.sub_path_of(layout.staging / "partner-a" / "a b" / "c.txt") == PurePosixPath(
        "partner-a/a b/c.txt")
    foreign = layout.staging / CLAIMS_DIR / "other.1.2" / "17-0" / "partner-b" / "x" / "y.csv"
    assert area.sub_path_of(foreign) == PurePosixPath("partner-b/x/y.csv")
    claim = area.claim(stage(layout, "partner-a/n/ü: x.txt", b"1"))
    assert area.sub_path_of(claim.path) == PurePosixPath("partner-a/n/ü: x.txt")


def test_orphaned_finds_dead_owners_only(layout):
    staging = layout.staging
    dead = Claims(staging, owner=dead_owner())
    dead_claim = dead.claim(stage(layout, "partner-a/dead.txt", b"dead"))
    # Same host and pid as a live process, but another start time: the pid was reused.
    reused = Claims(staging, owner=f"{socket.gethostname()}.{os.getpid()}.1")
    reused_claim = reused.claim(stage(layout, "partner-a/reused.txt", b"reused"))
    live = Claims(staging, owner=process_owner())
    live_claim = live.claim(stage(layout, "partner-a/live.txt", b"live"))
    fresh_foreign = Claims(staging, owner="other-host.example.1234.5678")
    fresh_claim = fresh_foreign.claim(stage(layout, "partner-a/foreign.txt", b"foreign"))
    old_foreign = Claims(staging, owner="old-host.example.99.99")
    old_claim = old_foreign.claim(stage(layout, "partner-a/old.txt", b"old"))
    expired = time.time() - FOREIGN_LEASE_SECONDS - 60
    os.utime(old_foreign.directory, (expired, expired))

    observer = Claims(staging, owner="observer.example.1.1")
    orphans = set(observer.orphaned())
    assert orphans == {dead_claim.path, reused_claim.path, old_claim.path}
    assert live_claim.path not in orphans and fresh_claim.path not in orphans
    # An area never reports its own claims as orphans (its own held() lists them).
    assert dead_claim.path not in dead.orphaned()
    assert dead.held() == [dead_claim.path]


def test_orphans_are_taken_over_and_their_empty_directories_removed(layout):
    dead = Claims(layout.staging, owner=dead_owner())
    taken = dead.claim(stage(layout, "partner-a/sub/taken.txt", b"take me"))
    left = dead.claim(stage(layout, "partner-b/left.txt", b"leave me"))
    empty_dead = Claims(layout.staging, owner=dead_owner())
    (empty_dead.directory / "slot" / "partner-a").mkdir(parents=True)
    live = Claims(layout.staging)
    (live.directory / "slot").mkdir(parents=True)

    area = Claims(layout.staging, owner="taker.example.1.1")
    again = area.claim(taken.path)
    assert again.sub_path == PurePosixPath("partner-a/sub/taken.txt")
    assert again.origin == layout.staging / "partner-a" / "sub" / "taken.txt"
    assert again.path.read_bytes() == b"take me"

    area.remove_empty_orphans()
    assert not empty_dead.directory.exists()
    assert left.path.read_bytes() == b"leave me"  # files are never removed
    assert (live.directory / "slot").is_dir()  # a live owner's directories are not touched
    assert set(area.orphaned()) == {left.path}


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

# --- verdict router -------------------------------------------------------------------------


def quarantine(layout: DataLayout, claim, verdict: VerdictKind, record: dict) -> Path:
    """What the scanner does with a quarantine verdict: the first name its record reserves
    (the record names where the file goes), then the move."""
    route = route_for(verdict, claim.sub_path, layout)
    assert route.area is Area.QUARANTINE
    for target in quarantine_names(route.target):
        content = record_content(
            {**record, "destination": target.relative_to(layout.root).as_posix()})
        if reserve_quarantine_name(target, record_path(target), content):
            return claim.quarantine(target, record_path(target))
    raise AssertionError("unreachable")


def test_clean_replaces_an_older_clean_file(layout):
    older = layout.clean / ODD_SUB_PATH
    older.parent.mkdir(parents=True)
    older.write_bytes(b"old clean")
    area = Claims(layout.staging)
    claim = area.claim(stage(layout, ODD_SUB_PATH, b"new clean"))
    route = route_for(VerdictKind.CLEAN, claim.sub_path, layout)
    assert route == Route(Area.CLEAN, older)
    with older.open("rb") as reader:  # a consumer mid-download
        assert claim.move_to(route.target) == older
        assert reader.read() == b"old clean"
    assert older.read_bytes() == b"new clean"
    assert not claim.path.exists()
    assert area.held() == [] and not list(area.directory.rglob("*"))
    assert files_under(layout.quarantine) == []


@pytest.mark.parametrize("verdict", [VerdictKind.INFECTED, VerdictKind.UNSCANNABLE])
def test_quarantine_never_replaces_and_keeps_a_record(layout, verdict):
    area = Claims(layout.staging)
    places = []
    for number in (1, 2, 3):
        claim = area.claim(stage(layout, ODD_SUB_PATH, f"evidence {number}".encode()))
        record = {"number": number, "verdict": verdict.value, "file": ODD_SUB_PATH}
        places.append(quarantine(layout, claim, verdict, record))
    directory = layout.quarantine / "partner-a" / "in dir"
    assert places == [directory / "Q1: rapport ünï ✓.txt",
                      directory / "Q1: rapport ünï ✓ (2).txt",
                      directory / "Q1: rapport ünï ✓ (3).txt"]
    for number, place in enumerate(places, start=1):
        assert place.read_bytes() == f"evidence {number}".encode()
        record = place.with_name(place.name + VERDICT_RECORD_SUFFIX)
        assert json.loads(record.read_text(encoding="utf-8")) == {
            "number": number, "verdict": verdict.value, "file": ODD_SUB_PATH,
            "destination": place.relative_to(layout.root).as_posix()}
    assert len(files_under(layout.quarantine)) == 6  # no temp files left
    assert files_under(layout.clean) == []
    assert area.held() == []


def test_an_upload_named_like_a_record_does_not_replace_the_record(layout):
    area = Claims(layout.staging)
    first = quarantine(layout, area.claim(stage(layout, "partner-a/x", b"x")),
                       VerdictKind.INFECTED, {"which": "x"})
    second = quarantine(layout, area.claim(stage(layout, "partner-a/x.verdict.json",
                                                 b"fake record")),
                        VerdictKind.INFECTED, {"which": "upload"})
    assert first == layout.quarantine / "partner-a" / "x"
    assert second == layout.quarantine / "partner-a" / "x.verdict (2).json"
    record = layout.quarantine / "partner-a" / "x.verdict.json"
    assert json.loads(record.read_text()) == {"which": "x",
                                              "destination": "quarantine/partner-a/x"}
    assert second.read_bytes() == b"fake record"


def test_error_goes_back_to_staging(layout):
    staged = stage(layout, "partner-a/a b/c: d.txt", b"retry me")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    route = route_for(VerdictKind.ERROR, claim.sub_path, layout)
    assert route == Route(Area.STAGING, staged)
    assert claim.release() == staged
    assert staged.read_bytes() == b"retry me"
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []
    assert area.held() == []


# --- scanner against a real clamd -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_clean_file_goes_to_clean_under_the_same_sub_path(layout, client, owners, mode):
    data = os.urandom(200_000)
    staged = stage(layout, ODD_SUB_PATH, data)
    scanner = make_scanner(layout, client, owners, mode)
    result = scanner.scan(staged, "run-1")
    assert result.verdict == "clean" and result.area is Area.CLEAN
    assert result.signature is None
    assert result.file == ODD_SUB_PATH
    assert result.account == "partner-a"
    assert (result.size, result.sha256) == (len(data), sha256(data))
    assert result.flow_run_id == "run-1"
    assert result.source == f"staging/{ODD_SUB_PATH}"
    assert result.destination == f"clean/{ODD_SUB_PATH}"
    assert (layout.clean / ODD_SUB_PATH).read_bytes() == data
    assert not staged.exists()
    assert files_under(layout.quarantine) == []
    assert files_under(layout.staging) == []


@pytest.mark.parametrize("mode", MODES)
def test_eicar_goes_to_quarantine_with_a_record(layout, client, owners, mode):
    staged = stage(layout, "partner-b/sub/eicar test.com", EICAR)
    result = make_scanner(layout, client, owners, mode).scan(staged, "run-2")
    assert result.verdict == "infected" and result.area is Area.QUARANTINE
    assert result.signature.startswith("Ssftp.Test.EICAR")
    assert result.signature.endswith(".UNOFFICIAL")
    assert result.account == "partner-b"
    assert (result.size, result.sha256) == (68, sha256(EICAR))
    quarantined = layout.quarantine / "partner-b" / "sub" / "eicar test.com"
    assert result.destination == "quarantine/partner-b/sub/eicar test.com"
    assert quarantined.read_bytes() == EICAR
    record = json.loads(quarantined.with_name("eicar test.com.verdict.json").read_text())
    assert record["verdict"] == "infected"
    assert record["signature"] == result.signature
    assert record["sha256"] == sha256(EICAR)
    assert record["file"] == "partner-b/sub/eicar test.com"
    assert record["account"] == "partner-b"
    assert record["instance"] == "gw-test"
    assert record["flow_run_id"] == "run-2"
    assert files_under(layout.clean) == [] and files_under(layout.staging) == []


def test_quarantine_record_names_where_the_file_is(layout, client, owners):
    first = make_scanner(layout, client, owners).scan(stage(layout, "partner-a/e.com", EICAR))
    record_path = layout.quarantine / "partner-a" / ("e.com" + VERDICT_RECORD_SUFFIX)
    record = json.loads(record_path.read_text())
    assert record["destination"] == first.destination == "quarantine/partner-a/e.com"


@pytest.mark.parametrize("mode", MODES)
def test_file_over_the_client_size_limit_is_unscannable(layout, clamd, owners, mode):
    limited = ClamdClient(clamd.address, timeout=30, max_file_size=1024)
    staged = stage(layout, "partner-a/big.bin", b"a" * 4096)
    result = make_scanner(layout, limited, owners, mode).scan(staged)
    assert result.verdict == "unscannable" and result.area is Area.QUARANTINE
    assert "over the scan limit" in result.detail
    assert (layout.quarantine / "partner-a" / "big.bin").read_bytes() == b"a" * 4096
    assert (layout.quarantine / "partner-a" / "big.bin.verdict.json").is_file()
    assert files_under(layout.clean) == []


def bytes_read_by_this_process() -> int:
    """``rchar`` of /proc/self/io: every byte this process's read calls have returned."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_sparse_file_over_the_size_limit_is_quarantined_without_being_read(
        layout, clamd, owners, audit_log):
    """The issue's sparse upload (one byte sent at the end of 40 GiB) was hashed whole before
    the size limit was looked at: 53 s to quarantine it. The limit is decided from fstat, so
    no byte is read and there is no hash. 1 GiB here keeps the failure on main short."""
    staged = layout.staging / "partner-a" / "sparse.bin"
    staged.parent.mkdir(parents=True)
    with staged.open("wb") as handle:
        handle.seek((1 << 30) - 1)
        handle.write(b"x")
    limited = ClamdClient(clamd.address, timeout=30, max_file_size=CLAMD_MAX_FILE_SIZE)
    before = bytes_read_by_this_process()
    result = make_scanner(layout, limited, owners).scan(staged, "run-10")
    assert bytes_read_by_this_process() - before < CLAMD_MAX_FILE_SIZE
    assert result.verdict == "unscannable" and result.area is Area.QUARANTINE
    assert result.sha256 is None and result.size == 1 << 30
    assert result.detail == f"{1 << 30} bytes is over the scan limit of {CLAMD_MAX_FILE_SIZE}"
    [event] = audit_events(audit_log)
    assert {key: event[key] for key in ("file", "verdict", "sha256", "size", "destination")} == {
        "file": "partner-a/sparse.bin", "verdict": "unscannable", "sha256": None,
        "size": 1 << 30, "destination": "quarantine/partner-a/sparse.bin"}
    assert (layout.quarantine / "partner-a" / "sparse.bin").stat().st_size == 1 << 30


@pytest.mark.parametrize("mode", ["path", "fd", "stream"])
def test_file_over_clamds_own_limit_is_never_clean(layout, clamd, owners, mode):
    unlimited = ClamdClient(clamd.address, timeout=60)  # only clamd's MaxFileSize applies
    data = os.urandom(CLAMD_MAX_FILE_SIZE + 4096)
    result = make_scanner(layout, unlimited, owners, mode).scan(
        stage(layout, "partner-a/huge.bin", data))
    assert result.verdict == "unscannable" and result.area is Area.QUARANTINE
    assert (layout.quarantine / "partner-a" / "huge.bin").stat().st_size == len(data)
    assert files_under(layout.clean) == []


@pytest.mark.parametrize("mode", MODES)
def test_unreachable_clamd_leaves_the_file_in_staging(layout, tmp_path, owners, mode):
    down = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "no-such-clamd.sock")), timeout=2)
    data = os.urandom(5000)
    staged = stage(layout, "partner-a/deep/retry.bin", data)
    scanner = make_scanner(layout, down, owners, mode)
    result = scanner.scan(staged, "run-3")
    assert result.verdict == "error" and result.area is Area.STAGING
    assert result.destination == result.source == "staging/partner-a/deep/retry.bin"
    assert result.sha256 == sha256(data)
    assert staged.read_bytes() == data
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []
    assert scanner.claims.held() == []


def test_refused_tcp_clamd_is_an_error_not_clean(layout, owners):
    down = ClamdClient(ClamdAddress(host="127.0.0.1", port=free_closed_port()), timeout=2)
    staged = stage(layout, "partner-a/tcp.txt", b"hello")
    result = make_scanner(layout, down, owners).scan(staged)
    assert result.verdict == "error" and result.area is Area.STAGING
    assert staged.read_bytes() == b"hello"
    assert files_under(layout.clean) == []


@pytest.mark.parametrize("scanning", [True, False])
def test_a_hard_linked_file_is_never_clean(layout, client, owners, tmp_path, scanning):
    staged = stage(layout, "partner-a/linked.txt", b"harmless today")
    outside = tmp_path / "second-name.txt"
    os.link(staged, outside)
    scanner = make_scanner(layout, client if scanning else None, owners)
    result = scanner.scan(staged)
    assert result.verdict == "unscannable" and result.area is Area.QUARANTINE
    assert "hard links" in result.detail
    assert files_under(layout.clean) == []
    assert (layout.quarantine / "partner-a" / "linked.txt").read_bytes() == b"harmless today"


def test_a_symlink_in_staging_is_never_clean(layout, client, owners, tmp_path):
    target = tmp_path / "outside-secret.txt"
    target.write_bytes(b"not for partners")
    link = layout.staging / "partner-a" / "link.txt"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    result = make_scanner(layout, client, owners).scan(link)
    assert result.verdict != "clean" and result.area is not Area.CLEAN
    assert files_under(layout.clean) == []
    assert target.read_bytes() == b"not for partners"


def test_a_fifo_in_staging_does_not_hang_the_scanner_and_is_never_clean(layout, client, owners):
    fifo = layout.staging / "partner-a" / "pipe"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    result = make_scanner(layout, client, owners).scan(fifo)
    assert result.verdict == "unscannable"
    assert result.area is Area.QUARANTINE
    assert files_under(layout.clean) == []


def test_scanning_switched_off_passes_files_as_unscanned(layout, owners):
    data = b"no scanner configured"
    staged = stage(layout, "pulled/in/file.dat", data)
    result = make_scanner(layout, None, owners).scan(staged, "run-4")
    assert result.verdict == "unscanned" and result.area is Area.CLEAN
    assert result.signature is None
    assert result.account == "downloader:pull-x"
    assert result.sha256 == sha256(data) and result.size == len(data)
    assert (layout.clean / "pulled" / "in" / "file.dat").read_bytes() == data


def test_a_vanished_file_is_none(layout, client, owners):
    scanner = make_scanner(layout, client, owners)
    assert scanner.scan(layout.staging / "partner-a" / "never-there.txt") is None
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []


@pytest.mark.parametrize(("data", "blocked"), [(b"harmless", "clean"), (EICAR, "quarantine")])
def test_a_file_that_cannot_be_moved_on_stays_claimed_as_an_error(layout, client, owners,
                                                                    data, blocked):
    # A file where the account's directory should be: creating it fails, as on a full disk.
    (layout.root / blocked / "partner-a").write_bytes(b"in the way")
    scanner = make_scanner(layout, client, owners)
    result = scanner.scan(stage(layout, "partner-a/stuck.txt", data))
    assert result.verdict == "error" and result.area is Area.STAGING
    assert "could not move the file on" in result.detail
    assert result.sha256 == sha256(data)
    (claimed,) = scanner.claims.held()
    assert result.destination == claimed.relative_to(layout.root).as_posix()
    assert claimed.read_bytes() == data
    assert files_under(layout.clean) + files_under(layout.quarantine) == [
        layout.root / blocked / "partner-a"]  # only what was in the way: no record, no file


def test_a_failed_move_to_quarantine_takes_its_record_back(layout, client, owners,
                                                           monkeypatch):
    def full_disk(source: Path, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ssftp.scan.claims.move_atomically", full_disk)
    scanner = make_scanner(layout, client, owners)
    result = scanner.scan(stage(layout, "partner-a/eicar.com", EICAR))
    assert result.verdict == "error" and result.area is Area.STAGING
    assert "No space left on device" in result.detail
    assert files_under(layout.quarantine) == []
    (claimed,) = scanner.claims.held()
    assert claimed.read_bytes() == EICAR


def test_an_orphaned_claim_is_scanned_under_its_staged_name(layout, client, owners):
    dead = Claims(layout.staging, owner=dead_owner())
    orphan = dead.claim(stage(layout, "partner-a/after crash.txt", b"still here")).path
    scanner = make_scanner(layout, client, owners)
    assert scanner.claims.orphaned() == [orphan]
    result = scanner.scan(orphan)
    assert result.verdict == "clean"
    assert result.source == "staging/partner-a/after crash.txt"
    assert (layout.clean / "partner-a" / "after crash.txt").read_bytes() == b"still here"
    assert scanner.claims.orphaned() == []


def test_every_scan_is_in_the_audit_log(layout, client, owners, audit_log):
    scanner = make_scanner(layout, client, owners)
    result = scanner.scan(stage(layout, "partner-a/eicar.com", EICAR), "run-5")
    events = audit_events(audit_log)
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "scan"
    assert event["level"] == "info"
    expected = {
        "file": "partner-a/eicar.com", "account": "partner-a", "size": 68,
        "sha256": sha256(EICAR), "verdict": "infected", "signature": result.signature,
        "source": "staging/partner-a/eicar.com", "destination": "quarantine/partner-a/eicar.com",
        "flow_run_id": "run-5", "instance": "gw-test",
    }
    assert {key: event.get(key) for key in expected} == expected


def test_a_failed_scan_is_audited_as_a_warning(layout, tmp_path, owners, audit_log):
    down = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "absent.sock")), timeout=2)
    make_scanner(layout, down, owners).scan(stage(layout, "partner-b/x.txt", b"x"), "run-6")
    [event] = audit_events(audit_log)
    assert event["event"] == "scan" and event["level"] == "warning"
    assert event["verdict"] == "error" and event["account"] == "partner-b"
    assert event["destination"] == "staging/partner-b/x.txt"
    assert event["flow_run_id"] == "run-6" and event["instance"] == "gw-test"


def test_an_infected_file_with_a_non_utf8_name_is_quarantined_under_a_safe_name(
        layout, client, owners, audit_log):
    """Its safe name (ssftp.names) is the one consumers, logs and Prefect carry; the audit
    record keeps the original bytes, escaped."""
    directory = layout.staging / "partner-a"
    directory.mkdir(parents=True)
    staged = non_utf8_path(directory, b"bad\xff.com")
    staged.write_bytes(EICAR)
    result = make_scanner(layout, client, owners).scan(staged)
    assert result.verdict == "infected"
    quarantined = layout.quarantine / "partner-a" / safe_name(staged.name)
    assert quarantined.read_bytes() == EICAR
    assert files_under(layout.quarantine) == [quarantined, record_path(quarantined)]
    assert json.loads(record_path(quarantined).read_text())["destination"] == \
        f"quarantine/partner-a/{quarantined.name}"
    (event,) = audit_events(audit_log)
    assert event["original_name"] == "partner-a/bad\\xff.com"
    assert event["file"] == "partner-a/" + staged.name  # the bytes, JSON-escaped
    assert event["destination"] == f"quarantine/partner-a/{quarantined.name}"


def test_a_file_with_a_non_utf8_name_is_audited_and_cleaned_under_a_safe_name(
        layout, owners, audit_log):
    directory = layout.staging / "partner-a" / os.fsdecode(b"d\xe9")
    directory.mkdir(parents=True)
    staged = non_utf8_path(directory, b"caf\xe9\n.txt")
    staged.write_bytes(b"latin-1 name")
    result = make_scanner(layout, None, owners).scan(staged)
    assert result.area is Area.CLEAN
    cleaned = layout.clean / "partner-a" / safe_name(directory.name) / safe_name(staged.name)
    assert cleaned.read_bytes() == b"latin-1 name"
    assert result.destination == cleaned.relative_to(layout.root).as_posix()
    assert result.destination.encode("utf-8")
    (event,) = audit_events(audit_log)
    assert event["event"] == "scan" and event["original_name"] == "partner-a/d\\xe9/caf\\xe9\\n.txt"


def test_a_name_too_long_for_its_verdict_record_is_quarantined_once(layout, client, owners):
    """A name of 243-255 bytes: ``<name>.verdict.json`` would be longer than a name may be.
    The record gets a shortened name; the file keeps its own (it was found, retried every
    few seconds for ever, and never reached quarantine)."""
    name = "e" * 246 + ".com"  # 250 bytes
    staged = stage(layout, f"partner-a/{name}", EICAR)
    result = make_scanner(layout, client, owners).scan(staged)
    assert (result.verdict, result.area) == ("infected", Area.QUARANTINE)
    quarantined = layout.quarantine / "partner-a" / name
    assert quarantined.read_bytes() == EICAR
    assert record_path(quarantined).name != name + VERDICT_RECORD_SUFFIX
    assert json.loads(record_path(quarantined).read_text())["verdict"] == "infected"
    again = make_scanner(layout, client, owners).scan(stage(layout, f"partner-a/{name}", EICAR))
    assert again.destination == f"quarantine/partner-a/{'e' * 246} (2).com"
    assert record_path(layout.root / again.destination).is_file()


def test_a_file_that_cannot_be_claimed_is_an_error_that_stays(layout, client, owners):
    """A sub path as long as the system allows in staging is longer than it allows below the
    claims: the scan is an attempt that failed (retried), not a crash of the run."""
    room = 4080 - len(os.fsencode(layout.staging / "partner-a" / "f.txt"))  # PATH_MAX 4096
    deep = "/".join(["d" * 200] * (room // 201) + ["d" * (room % 201)])
    staged = stage(layout, f"partner-a/{deep}/f.txt", b"deep")
    result = make_scanner(layout, client, owners).scan(staged)
    assert (result.verdict, result.area) == ("error", Area.STAGING)
    assert "could not be claimed" in result.detail
    assert staged.read_bytes() == b"deep"


# --- staging owners -------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_the_longest_owning_directory_wins(reverse):
    staging_dir = [
        {"directory": "a", "auth": {"username": "user-a", "password": "pw"}},
        {"directory": "a/b", "auth": {"username": "user-ab", "password": "pw"}},
    ]
    config = SsftpConfig.model_validate({
        "users": {"stagingDir": staging_dir[::-1] if reverse else staging_dir},
        "sftpClientDownloaders": [
            {"name": "dl", "host": "h", "username": "u", "password": "p",
             "localStagingDirectory": "a/b/c"},
            {"name": "other", "host": "h", "username": "u", "password": "p",
             "localStagingDirectory": "pulled"},
        ],
    })
    owners = StagingOwners(config)
    cases = {
        "a/x.txt": "user-a",
        "a/bc/x.txt": "user-a",
        "a/b/x.txt": "user-ab",
        "a/b/cd/x.txt": "user-ab",
        "a/b/c/x.txt": "downloader:dl",
        "a/b/c/d/x.txt": "downloader:dl",
        "pulled/x.txt": "downloader:other",
        "ab/x.txt": None,
        "unknown/x.txt": None,
        "a": None,
    }
    assert {sub: owners.owner_of(PurePosixPath(sub)) for sub in cases} == cases


# --- webhooks -------------------------------------------------------------------------------


def scan_result(verdict: str = "infected", **changes) -> ScanResult:
    values = {
        "file": "partner-a/eicar.com", "account": "partner-a", "size": 68,
        "sha256": sha256(EICAR),
        "verdict": VerdictKind(verdict),
        "signature": "Ssftp.Test.EICAR-HDB.UNOFFICIAL" if verdict == "infected" else None,
        "detail": "Ssftp.Test.EICAR-HDB.UNOFFICIAL FOUND",
        "source": "staging/partner-a/eicar.com",
        "destination": f"{AREA_OF[verdict]}/partner-a/eicar.com",
        "area": AREA_OF[verdict], "time": "2026-01-01T00:00:00.000+00:00",
        "flow_run_id": "run-7",
    }
    values.update(changes)
    return ScanResult(**values)


# Where a scan sends a file with each verdict.
AREA_OF = {"clean": Area.CLEAN, "unscanned": Area.CLEAN, "infected": Area.QUARANTINE,
           "unscannable": Area.QUARANTINE, "error": Area.STAGING}


def with_webhooks(*webhooks: Webhook) -> SsftpConfig:
    return SsftpConfig.model_validate({"instanceName": "gw-1"}).model_copy(
        update={"webhooks": list(webhooks)})


def hook(name: str = "virusFound", url: str = "http://127.0.0.1:9/hook",
         secret: str | None = "s3cret") -> Webhook:
    data = {"name": name, "url": url}
    if secret is not None:
        data["secret"] = secret
    return Webhook.model_validate(data)


@pytest.mark.parametrize(
    ("verdict", "failures", "webhook", "event"),
    [
        ("infected", 0, "virusFound", "ssftp.file.infected"),
        ("infected", 2, "virusFound", "ssftp.file.infected"),
        ("unscannable", 0, "scanError", "ssftp.file.unscannable"),
        ("error", 0, "scanError", "ssftp.file.waiting"),
        ("error", 1, None, None),
        ("clean", 0, None, "ssftp.file.clean"),
        ("unscanned", 0, None, "ssftp.file.clean"),
    ],
)
def test_what_an_outcome_owes(verdict, failures, webhook, event):
    config = with_webhooks(hook("virusFound"), hook("scanError"))
    due = owed(scan_result(verdict), failures, config)
    assert [n.event for n in due.notifications] == ([webhook] if webhook else [])
    assert due.event == event


def test_payload_keeps_ssftp_fields_and_adds_the_evidence():
    body = payload("virusFound", scan_result(), "gw-1", "id-1")
    assert body["eventId"] == "id-1"
    assert body["username"] == "partner-a"
    assert body["scanMessage"] == "Ssftp.Test.EICAR-HDB.UNOFFICIAL FOUND"
    assert body["filePath"] == "staging/partner-a/eicar.com"
    assert body["timeGenerated"].endswith("+00:00")
    assert body["sha256"] == sha256(EICAR)
    assert body["size"] == 68
    assert body["signature"] == "Ssftp.Test.EICAR-HDB.UNOFFICIAL"
    assert body["account"] == "partner-a"
    assert body["instance"] == "gw-1"
    assert body["event"] == "virusFound"
    assert payload("scanError", scan_result("error", account=None), "gw-1",
                   "id-2")["username"] == ""


def test_a_payload_names_no_host_path():
    """clamd's error names its socket on the host; a receiver gets ssftp's own words."""
    result = scan_result(
        "error", detail="cannot scan with clamd at /srv/ssftp/system/clamd/clamd.sock: [Errno 111]")
    body = json.dumps(payload("scanError", result, "gw-1", "id-3"))
    assert "/srv/ssftp" not in body
    assert "retried" in json.loads(body)["scanMessage"]


def test_sign_is_hmac_sha256_of_the_body():
    body = b'{"a": 1}'
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == expected
    assert sign(body, "other") != expected
    assert sign(body + b" ", "s3cret") != expected


def test_notifications_go_only_to_webhooks_of_the_event():
    webhooks = [hook("virusFound", "http://127.0.0.1:9/one"),
                hook("scanError", "http://127.0.0.1:9/two"),
                hook("virusFound", "http://127.0.0.1:9/three")]
    config = with_webhooks(*webhooks)
    infected = owed(scan_result(), 0, config).notifications
    assert [n.webhook.url for n in infected] == ["http://127.0.0.1:9/one",
                                                 "http://127.0.0.1:9/three"]
    assert all(n.event == "virusFound" and n.file == "partner-a/eicar.com" for n in infected)
    assert json.loads(infected[0].body)["username"] == "partner-a"
    errors = owed(scan_result("error"), 0, config).notifications
    assert [n.webhook.url for n in errors] == ["http://127.0.0.1:9/two"]
    assert owed(scan_result("error"), 1, config).notifications == []
    assert owed(scan_result("clean"), 0, config).notifications == []


def test_a_notification_for_a_non_utf8_file_name_can_be_built():
    name = os.fsdecode(b"partner-a/bad\xff.com")
    result = scan_result(file=name, source="staging/" + name)
    [notification] = owed(result, 0, with_webhooks(hook())).notifications
    assert "partner-a/bad" in json.loads(notification.body)["filePath"]


@pytest.fixture
def receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


async def test_deliver_posts_the_signed_body(receiver):
    url = f"{receiver.url}/hook"
    notification = Notification.build(hook(url=url), "virusFound", scan_result(), "gw-1")
    assert await deliver(notification) == 200
    [request] = receiver.requests
    path, headers, body = request.path, request.headers, request.body
    assert path == "/hook"
    assert body == notification.body
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers[EVENT_HEADER] == "virusFound"
    assert headers[EVENT_ID_HEADER] == notification.id == json.loads(body)["eventId"]
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["sha256"] == sha256(EICAR)


async def test_deliver_without_a_secret_sends_no_signature(receiver):
    url = f"{receiver.url}/plain"
    notification = Notification.build(hook("scanError", url, secret=None), "scanError",
                                      scan_result("unscannable"), "gw-1")
    assert await deliver(notification) == 200
    [request] = receiver.requests
    headers, body = request.headers, request.body
    assert SIGNATURE_HEADER not in headers
    assert headers[EVENT_HEADER] == "scanError"
    assert body == notification.body


async def test_a_failing_receiver_raises_without_leaking_credentials(receiver):
    receiver.status = 500
    port = receiver.server.server_address[1]
    url = f"http://user:pw-XYZ@127.0.0.1:{port}/hook?token=SECRET123"
    notification = Notification.build(hook(url=url), "virusFound", scan_result(), "gw-1")
    with pytest.raises(WebhookError) as raised:
        await deliver(notification)
    message = str(raised.value)
    assert "HTTP 500" in message
    assert f"127.0.0.1:{port}/hook" in message
    for secret in ("SECRET123", "token", "pw-XYZ", "user:"):
        assert secret not in message
    assert [request.path for request in receiver.requests] == ["/hook?token=SECRET123"]


async def test_a_refused_connection_raises_webhook_error():
    url = f"http://user:pw-XYZ@127.0.0.1:{free_closed_port()}/hook?token=SECRET123"
    notification = Notification.build(hook(url=url), "virusFound", scan_result(), "gw-1")
    with pytest.raises(WebhookError) as raised:
        await deliver(notification)
    message = str(raised.value)
    assert "ConnectError" in message
    for secret in ("SECRET123", "pw-XYZ"):
        assert secret not in message


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


# --- config sections ------------------------------------------------------------------------


def load_yaml(tmp_path: Path, text: str):
    path = tmp_path / "ssftp.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return load_config(path)


def issue_paths(error: ConfigError) -> list[str]:
    return [issue.dotted for issue in error.issues]


def test_a_bad_clamd_address_is_refused_with_its_key(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, """
            sftpPort: 2022
            clamav:
              address: nonsense
            """)
    assert issue_paths(raised.value) == ["clamav.address"]
    assert raised.value.issues[0].line == 3
    assert "a clamd address is a socket path" in str(raised.value)
    assert "clamav.address" in str(raised.value)


@pytest.mark.parametrize("address", ["/run/clamav/clamd.sock", "unix:/run/c.sock",
                                     "tcp://clamav:3310", "clamav:3310", "tcp://[::1]:3310"])
def test_good_clamd_addresses_load(tmp_path, address):
    config = load_yaml(tmp_path, f"""
        clamav:
          address: "{address}"
          mode: stream
          maxFileSize: 1048576
          timeout: 30
        """).config
    assert config.clamav.address == address
    assert ClamdAddress.parse(config.clamav.address) is not None
    assert (config.clamav.mode, config.clamav.max_file_size, config.clamav.timeout) == (
        "stream", 1048576, 30.0)


@pytest.mark.parametrize(("section", "key"), [
    ("clamav:\n  mode: bogus", "clamav.mode"),
    ("clamav:\n  maxFileSize: 0", "clamav.maxFileSize"),
    ("scanning:\n  stableSeconds: -1", "scanning.stableSeconds"),
    ("scanning:\n  retryInitialSeconds: 0", "scanning.retryInitialSeconds"),
    ("scanning:\n  maxBatchFiles: 0", "scanning.maxBatchFiles"),
    ("scanning:\n  largeFileSize: 0", "scanning.largeFileSize"),
    ("scanning:\n  batchWindow: 1", "scanning.batchWindow"),
    ("instanceName: ''", "instanceName"),
])
def test_bad_pipeline_settings_are_refused(tmp_path, section, key):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, section + "\n")
    assert issue_paths(raised.value) == [key]


def test_pipeline_settings_and_defaults(tmp_path):
    defaults = load_yaml(tmp_path, "sftpPort: 2022\n").config
    assert defaults.instance_name == socket.gethostname()
    assert defaults.enable_virus_scan is True
    assert defaults.clamav.address is None and defaults.clamav.mode == "auto"
    assert defaults.scanning.stable_seconds > 0
    assert defaults.scanning.retry_initial_seconds <= defaults.scanning.retry_max_seconds

    config = load_yaml(tmp_path, """
        instanceName: gateway-eu-1
        scanning:
          stableSeconds: 2
          batchWindowSeconds: 0.5
          maxBatchFiles: 10
          largeFileSize: 1048576
          retryInitialSeconds: 1
          retryMaxSeconds: 60
        webhooks:
          - name: virusFound
            url: https://hooks.example.com/v
            retryDelaySeconds: 0.5
          - name: scanError
            url: https://hooks.example.com/e
        """).config
    assert config.instance_name == "gateway-eu-1"
    scanning = config.scanning
    assert (scanning.stable_seconds, scanning.batch_window_seconds, scanning.max_batch_files,
            scanning.large_file_size, scanning.retry_initial_seconds,
            scanning.retry_max_seconds) == (2, 0.5, 10, 1048576, 1, 60)
    assert [w.retry_delay_seconds for w in config.webhooks] == [0.5, 2.0]


def test_a_negative_webhook_retry_delay_is_refused(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, """
            webhooks:
              - name: virusFound
                url: https://hooks.example.com/v
                retryDelaySeconds: -1
            """)
    assert issue_paths(raised.value) == ["webhooks[0].retryDelaySeconds"]


@pytest.mark.parametrize("directory", [".ssftp-claims", "partner/.ssftp-tmp-x", ".ssftp-x/y"])
def test_reserved_names_are_refused_as_staging_directories(tmp_path, directory):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, f"""
            users:
              stagingDir:
                - directory: "{directory}"
                  auth:
                    username: partner
                    password: pw
            sftpClientDownloaders:
              - name: dl
                host: sftp.example.com
                username: remote
                password: pw
                localStagingDirectory: "{directory}"
            """)
    assert issue_paths(raised.value) == ["users.stagingDir[0].directory",
                                         "sftpClientDownloaders[0].localStagingDirectory"]
    assert "reserved for ssftp" in str(raised.value)


# --- a file that changes while clamd scans it ------------------------------------------------


def _open_sockets() -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


@pytest.mark.parametrize("mode", ["fd", "stream"])
def test_a_file_changed_during_its_scan_is_not_passed_on(layout, owners, tmp_path, mode):
    """clamd is frozen mid-scan (SIGSTOP) while the claimed file is appended to: the verdict
    belongs to other bytes, so the file goes back to staging, whole, instead of to clean/."""
    import signal

    from ssftp.runtime.clamd_daemon import TEST_SIGNATURES, ClamdDaemon

    daemon = ClamdDaemon.start(tmp_path / "own-clamd", database=TEST_SIGNATURES)
    try:
        scanner = Scanner(layout, ClamdClient(daemon.address, timeout=60), mode=mode,
                          owners=owners, instance="gw-test", claims=Claims(layout.staging))
        staged = stage(layout, "partner-a/growing.txt", b"first part\n")
        daemon.process.send_signal(signal.SIGSTOP)
        sockets_before = _open_sockets()
        outcome: list[ScanResult | None] = []
        worker = threading.Thread(target=lambda: outcome.append(scanner.scan(staged)))
        worker.start()
        try:
            # The scanner connects to clamd only after it has fingerprinted and hashed the
            # claimed file: once its socket exists, any change comes after that fingerprint.
            deadline = time.monotonic() + 30
            while _open_sockets() <= sockets_before and time.monotonic() < deadline:
                time.sleep(0.01)
            (claimed,) = scanner.claims.held()
            with claimed.open("ab") as handle:
                handle.write(b"appended while scanning\n")
        finally:
            daemon.process.send_signal(signal.SIGCONT)
            worker.join(timeout=60)
        (result,) = outcome
        assert result is not None
        assert result.verdict == "error"
        assert "changed" in result.detail
        assert result.area is Area.STAGING
        assert staged.read_bytes() == b"first part\nappended while scanning\n"
        assert files_under(layout.clean) == []
    finally:
        daemon.stop()


def _replace_once_opened(claims: Claims, data: bytes, done: threading.Event) -> None:
    """As soon as this process holds a claimed file open (the scanner is hashing it), move its
    directory aside and put another with ``data`` under the same name, as another writer on
    the share could. The opened file itself is not touched: its stat (ctime too) stays."""
    fds = Path("/proc/self/fd")
    while not done.is_set():
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                opened = Path(os.readlink(fd))
                if claims.directory in opened.parents:
                    opened.parent.rename(opened.parent.with_name(f"{TEMP_PREFIX}parked"))
                    opened.parent.mkdir()
                    opened.write_bytes(data)
                    return


@pytest.mark.parametrize("mode", MODES)
def test_clamd_scans_the_bytes_that_were_hashed_not_what_the_name_holds_later(
        layout, clamd, owners, mode):
    """EICAR takes the claimed file's name while the file is hashed (the big file keeps the
    scanner busy far longer than the swap takes): clamd must read the opened file, not the
    name again, and the file now under the name is not what was scanned, so it is not passed
    on. Before, clamd was given the name: the verdict was EICAR's, the hash the old bytes'.
    (No size limit of ssftp's: a file over it would not be hashed at all.)"""
    big = os.urandom(1 << 16) * 1024  # 64 MiB, harmless
    scanner = make_scanner(layout, ClamdClient(clamd.address, timeout=30), owners, mode)
    done = threading.Event()
    swapper = threading.Thread(target=_replace_once_opened,
                               args=(scanner.claims, EICAR, done), daemon=True)
    swapper.start()
    try:
        result = scanner.scan(stage(layout, "partner-a/big.bin", big))
    finally:
        done.set()
        swapper.join(timeout=30)
    assert result is not None
    assert (result.verdict, result.sha256) == ("error", sha256(big)), result.detail
    assert "changed" in result.detail and result.area is Area.STAGING
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []
    assert (layout.staging / "partner-a" / "big.bin").read_bytes() == EICAR  # released


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_link_or_fifo_bound_for_quarantine_on_another_filesystem_is_never_copied(
        layout, client, owners, tmp_path, kind):
    """quarantine/ on a filesystem of its own: a move there is a copy, which would follow a
    symlink (copying a file outside every area) or block for ever reading a FIFO. Such a file
    is not copied: it stays claimed (an error, never clean), and the scanner returns."""
    secret = tmp_path / "outside-secret.txt"
    secret.write_bytes(b"not for partners")
    staged = layout.staging / "partner-a" / "odd.txt"
    staged.parent.mkdir(parents=True)
    if kind == "symlink":
        staged.symlink_to(secret)
    else:
        os.mkfifo(staged)
    with tmpfs(layout.quarantine, "1m"):
        scanner = make_scanner(layout, client, owners)
        outcome: list[ScanResult | None] = []
        worker = threading.Thread(target=lambda: outcome.append(scanner.scan(staged)),
                                  daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the scanner is stuck moving the file"
        moved = files_under(layout.quarantine)
    (result,) = outcome
    assert result is not None and result.area is Area.STAGING
    assert result.verdict == "error" and "could not move the file on" in result.detail
    assert moved == [] and files_under(layout.clean) == []
    (claimed,) = scanner.claims.held()
    assert claimed.is_symlink() if kind == "symlink" else stat.S_ISFIFO(claimed.lstat().st_mode)
