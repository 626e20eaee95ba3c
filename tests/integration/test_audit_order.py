"""No file reaches ``clean/`` or ``quarantine/`` without its audit record, its verdict record and
the webhooks it owes: each is written first, by a write whose failure the scanner sees, on real
full filesystems (small tmpfs mounts) with a real clamd."""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ssftp import logs
from ssftp.config.schema import SsftpConfig, Webhook
from ssftp.layout import DataLayout
from ssftp.notify.outbox import Outbox
from ssftp.notify.record import OutboxRecorder
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.router import VERDICT_RECORD_SUFFIX
from testkit.files import EICAR
from tests.support.logs import logging_into
from tests.support.scanning import files_under, make_scanner, stage
from tests.support.system import tmpfs

PAGE = 4096
# Room left on the audit log's last page: the failing record's first bytes fit, the rest does
# not, so the write is cut short (the case a plain "write failed" check would miss).
ROOM_ON_LAST_PAGE = 64

CASES = [(b"harmless bytes", Area.CLEAN, "clean"), (EICAR, Area.QUARANTINE, "infected")]


@dataclass
class Filler:
    """A file that takes every free page of its filesystem until freed."""

    path: Path

    def fill(self) -> None:
        with self.path.open("ab", buffering=0) as out, pytest.raises(OSError) as full:
            while True:
                out.write(b"\0" * PAGE)
        assert full.value.errno == errno.ENOSPC

    def free(self, pages: int | None = None) -> None:
        """Free every page it holds, or only that many."""
        if pages is None:
            self.path.unlink()
        else:
            os.truncate(self.path, self.path.stat().st_size - pages * PAGE)


def audit_lines(path: Path) -> list[dict]:
    """Every line of the audit log, each of which must be a whole JSON record."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def scans(path: Path) -> list[dict]:
    return [record for record in audit_lines(path) if record["event"] == "scan"]


def pad_to_nearly_a_page(audit_log: Path) -> None:
    """One record that leaves ``ROOM_ON_LAST_PAGE`` bytes on the log's first page."""
    audit = logging.getLogger(logs.AUDIT)
    logs.log_event(audit, "padding", pad="")
    size = audit_log.stat().st_size
    os.truncate(audit_log, 0)
    logs.log_event(audit, "padding", pad="x" * (PAGE - ROOM_ON_LAST_PAGE - size))
    assert audit_log.stat().st_size == PAGE - ROOM_ON_LAST_PAGE



@pytest.fixture
def full_log_dir(layout: DataLayout) -> Iterator[Filler]:
    """``log/`` on a small tmpfs with the logs written there, then filled up to the last page."""
    with tmpfs(layout.log, "64k"), logging_into(layout.log) as audit_log:
        pad_to_nearly_a_page(audit_log)
        filler = Filler(layout.log / "filler")
        filler.fill()
        yield filler


@pytest.mark.parametrize(("data", "area", "verdict"), CASES, ids=["clean", "infected"])
def test_a_file_whose_audit_record_cannot_be_written_stays_in_staging_until_it_can(
        layout, client, owners, full_log_dir, capfd, data, area, verdict):
    audit_log = layout.log / "audit.log"
    staged = stage(layout, "partner-a/report.com", data)
    scanner = make_scanner(layout, client, owners)
    capfd.readouterr()

    result = scanner.scan(staged, "run-1")
    assert result.verdict == "error" and result.area is Area.STAGING
    assert "audit record not written" in result.detail and str(audit_log) in result.detail
    assert result.destination == "staging/partner-a/report.com"
    assert staged.read_bytes() == data and scanner.claims.held() == []
    assert files_under(layout.clean) + files_under(layout.quarantine) == []  # nor a record
    [line] = capfd.readouterr().err.splitlines()
    assert "partner-a/report.com" in line and str(audit_log) in line
    assert "No space left on device" in line
    # The line cut short was taken back: only the padding is there, whole.
    assert [record["event"] for record in audit_lines(audit_log)] == ["padding"]
    assert audit_log.stat().st_size == PAGE - ROOM_ON_LAST_PAGE

    full_log_dir.free()
    again = scanner.scan(staged, "run-2")
    assert again.verdict == verdict and again.area is area
    moved = layout.root / again.destination
    assert moved.read_bytes() == data and not staged.exists()
    [record] = scans(audit_log)
    assert (record["verdict"], record["destination"], record["flow_run_id"]) == (
        verdict, f"{area}/partner-a/report.com", "run-2")
    assert record["sha256"] == again.sha256 and record["size"] == len(data)
    if area is Area.QUARANTINE:
        assert moved.with_name(moved.name + VERDICT_RECORD_SUFFIX).is_file()


@pytest.mark.parametrize(("data", "area", "verdict"), CASES, ids=["clean", "infected"])
def test_a_move_that_fails_after_the_record_is_written_gets_a_second_record(
        layout, client, owners, data, area, verdict):
    # The destination on a full filesystem of its own: the move (a copy there) fails.
    with tmpfs(layout.root / area, "64k") as destination, logging_into(layout.log) as audit_log:
        filler = Filler(destination / "filler")
        filler.fill()
        if area is Area.QUARANTINE:
            filler.free(pages=1)  # room for the verdict record, which comes first; not the file
        scanner = make_scanner(layout, client, owners)
        result = scanner.scan(stage(layout, "partner-a/report.com", data), "run-3")
        assert result.verdict == "error" and "could not move the file on" in result.detail
        (claimed,) = scanner.claims.held()
        assert claimed.read_bytes() == data
        assert not (destination / "partner-a" / "report.com").exists()
        planned, failed = scans(audit_log)
    assert (planned["verdict"], planned["destination"]) == (verdict, f"{area}/partner-a/report.com")
    assert (failed["verdict"], failed["level"]) == ("error", "warning")
    assert failed["destination"] == claimed.relative_to(layout.root).as_posix()
    assert failed["sha256"] == planned["sha256"] == result.sha256


def test_a_verdict_record_that_cannot_be_written_leaves_no_empty_record(layout, client, owners):
    """quarantine/ is full: the verdict record cannot be written, so the empty record that
    reserved the name must go too; otherwise the name stays taken and the file, scanned again,
    lands as ``name (2).ext`` beside a record of nothing (issue 13, item 7)."""
    with tmpfs(layout.quarantine, "64k") as quarantine, logging_into(layout.log):
        filler = Filler(quarantine / "filler")
        filler.fill()
        scanner = make_scanner(layout, client, owners)
        result = scanner.scan(stage(layout, "partner-a/eicar.com", EICAR), "run-4")
        assert result.verdict == "error" and result.area is Area.STAGING
        assert "No space left on device" in result.detail
        assert files_under(quarantine) == [quarantine / "filler"]
        (claimed,) = scanner.claims.held()
        filler.free()
        again = scanner.scan(claimed, "run-5")
        assert (again.verdict, again.destination) == (
            "infected", "quarantine/partner-a/eicar.com")
        record = quarantine / "partner-a" / f"eicar.com{VERDICT_RECORD_SUFFIX}"
        assert json.loads(record.read_bytes())["verdict"] == "infected"
        assert files_under(quarantine) == [record.with_name("eicar.com"), record]


HOOK = Webhook.model_validate({"name": "virusFound", "url": "http://127.0.0.1:9/hook"})


@dataclass
class Owed:
    """The worker's recorder on a real outbox, noting what was on disk when it recorded a
    file about to move."""

    layout: DataLayout
    outbox: Outbox
    seen: list[tuple[bool, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        config = SsftpConfig.model_validate({"instanceName": "gw"})
        self.recorder = OutboxRecorder(self.outbox,
                                       lambda: config.model_copy(update={"webhooks": [HOOK]}))

    def record(self, result: ScanResult, audit: Mapping[str, object], *,
               quiet: bool = False) -> str | None:
        if result.area is not Area.STAGING:
            moved = self.layout.root / result.destination
            record = moved.with_name(moved.name + VERDICT_RECORD_SUFFIX)
            self.seen.append((moved.exists(), json.loads(record.read_bytes())))
        return self.recorder.record(result, audit, quiet=quiet)

    def bodies(self) -> list[dict]:
        owed = self.outbox.owed(now=time.time() + 1, limit=100)
        return [json.loads(item.body) for item in self.outbox.pending(owed)]


def test_a_quarantined_file_has_its_record_and_webhook_stored_before_it_moves(
        layout, client, owners):
    """A crash right before the move must leave the webhook owed and the verdict record
    whole: on the main this replaces, the webhook was built only after the scan run returned
    (a crash lost it) and the record that reserved the name was empty until the move."""
    owed = Owed(layout, Outbox(layout.system / "outbox.sqlite3"))
    with logging_into(layout.log):
        result = make_scanner(layout, client, owners, recorder=owed).scan(
            stage(layout, "partner-a/eicar.com", EICAR), "run-6")
    assert (result.verdict, result.destination) == ("infected", "quarantine/partner-a/eicar.com")
    [(moved_yet, record)] = owed.seen
    assert not moved_yet
    assert (record["verdict"], record["destination"]) == (
        "infected", "quarantine/partner-a/eicar.com")
    [body] = owed.bodies()
    assert (body["event"], body["destination"], body["sha256"]) == (
        "virusFound", result.destination, result.sha256)


def test_a_file_whose_webhook_cannot_be_stored_stays_in_staging_until_it_can(
        layout, client, owners, capfd):
    with tmpfs(layout.system, "256k") as system, logging_into(layout.log) as audit_log:
        owed = Owed(layout, Outbox(system / "outbox.sqlite3"))
        filler = Filler(system / "filler")
        filler.fill()
        scanner = make_scanner(layout, client, owners, recorder=owed)
        staged = stage(layout, "partner-a/eicar.com", EICAR)
        capfd.readouterr()

        result = scanner.scan(staged, "run-7")
        assert result.verdict == "error" and result.area is Area.STAGING
        assert "webhook outbox" in result.detail and "full" in result.detail
        assert staged.read_bytes() == EICAR and scanner.claims.held() == []
        assert files_under(layout.quarantine) == []  # nor the record that reserved the name
        [line] = capfd.readouterr().err.splitlines()
        assert "partner-a/eicar.com" in line and "webhook outbox" in line
        planned, stayed = scans(audit_log)
        assert (planned["verdict"], stayed["verdict"]) == ("infected", "error")

        filler.free()
        again = scanner.scan(staged, "run-8")
        assert (again.verdict, again.area) == ("infected", Area.QUARANTINE)
        assert [body["destination"] for body in owed.bodies()] == [again.destination]
        owed.outbox.close()


def test_the_audit_log_is_opened_again_when_logrotate_moved_it(layout, owners):
    with logging_into(layout.log) as audit_log:
        scanner = make_scanner(layout, None, owners)
        scanner.scan(stage(layout, "partner-a/first.txt", b"1"))
        rotated = audit_log.rename(layout.log / "audit.log.1")
        scanner.scan(stage(layout, "partner-a/second.txt", b"2"))
        assert [record["file"] for record in scans(rotated)] == ["partner-a/first.txt"]
        assert [record["file"] for record in scans(audit_log)] == ["partner-a/second.txt"]


def test_the_audit_log_is_opened_again_after_its_handler_was_closed(layout, owners):
    # Prefect's logging setup (dictConfig) closes every handler, also those still attached.
    with logging_into(layout.log) as audit_log:
        for handler in logging.getLogger(logs.AUDIT).handlers:
            handler.close()
        make_scanner(layout, None, owners).scan(stage(layout, "partner-a/after.txt", b"1"))
        assert [record["file"] for record in scans(audit_log)] == ["partner-a/after.txt"]
