"""The worker's recorder: what it stores for each outcome, and how it counts a file's failures
for the first-failure rule (ssftp.notify.record)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from ssftp.config.schema import SsftpConfig, Webhook
from ssftp.errors import OutboxError
from ssftp.notify import record as record_module
from ssftp.notify.outbox import Outbox, StoredNotification
from ssftp.notify.owed import CLEAN, INFECTED, WAITING
from ssftp.notify.record import OutboxRecorder
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.verdict import VerdictKind

HOOKS = [Webhook.model_validate({"name": name, "url": f"http://127.0.0.1:9/{name}"})
         for name in ("virusFound", "scanError")]
CONFIG = SsftpConfig.model_validate({"instanceName": "gw"}).model_copy(
    update={"webhooks": HOOKS})
VERDICT_OF = {Area.CLEAN: VerdictKind.CLEAN, Area.QUARANTINE: VerdictKind.INFECTED,
              Area.STAGING: VerdictKind.ERROR}


def outcome(area: Area, file: str = "partner-a/x.bin") -> ScanResult:
    return ScanResult(file=file, account="partner-a", size=1, sha256="ab" * 32,
                      verdict=VERDICT_OF[area], signature=None, detail="d",
                      source=f"staging/{file}", destination=f"{area}/{file}", area=area,
                      time="t", flow_run_id=None)


def stored_events(outbox: Outbox) -> list[str]:
    owed = outbox.owed(now=time.time() + 1, limit=100)
    return [item.event for item in outbox.pending(owed)]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3")


def test_a_file_tells_its_first_failure_only_until_it_leaves_staging(outbox):
    recorder = OutboxRecorder(outbox, lambda: CONFIG)
    assert recorder.record(outcome(Area.STAGING), {}) == WAITING
    assert recorder.record(outcome(Area.STAGING), {}) is None
    assert recorder.record(outcome(Area.STAGING), {}) is None
    assert stored_events(outbox) == ["scanError"]
    # Another file's first failure is its own.
    assert recorder.record(outcome(Area.STAGING, "partner-a/y.bin"), {}) == WAITING
    assert recorder.record(outcome(Area.CLEAN), {}) == CLEAN
    # Clean now: a later failure of the same name is a first failure again.
    assert recorder.record(outcome(Area.STAGING), {}) == WAITING
    assert stored_events(outbox) == ["scanError"] * 3


def test_a_quarantined_file_owes_its_webhook_before_it_moves(outbox):
    recorder = OutboxRecorder(outbox, lambda: CONFIG)
    assert recorder.record(outcome(Area.QUARANTINE), {}) == INFECTED
    assert stored_events(outbox) == ["virusFound"]


class RefusingOutbox(Outbox):
    """An outbox whose disk is full. Unit tier: the real full disk (a tmpfs) is in
    tests/integration/test_audit_order.py."""

    def add(self, items: Iterable[StoredNotification]) -> None:
        raise OutboxError("the webhook outbox is full")


def test_an_outbox_that_refuses_gates_a_move_but_not_a_file_that_stays(tmp_path):
    recorder = OutboxRecorder(RefusingOutbox(tmp_path / "outbox.sqlite3"), lambda: CONFIG)
    with pytest.raises(OutboxError):
        recorder.record(outcome(Area.QUARANTINE), {})
    # A file that stays is recorded as far as it can be: its event still goes out, and its
    # failure is counted (its retry does not tell again).
    assert recorder.record(outcome(Area.STAGING), {}) == WAITING
    assert recorder.record(outcome(Area.STAGING), {}) is None


def test_the_oldest_count_goes_past_the_bound(outbox, monkeypatch):
    monkeypatch.setattr(record_module, "FAILURES_KEPT", 2)
    recorder = OutboxRecorder(outbox, lambda: CONFIG)
    for name in ("a", "b", "c"):
        assert recorder.record(outcome(Area.STAGING, f"partner-a/{name}"), {}) == WAITING
    # "a" was forgotten (it tells once more); "c" was not.
    assert recorder.record(outcome(Area.STAGING, "partner-a/c"), {}) is None
    assert recorder.record(outcome(Area.STAGING, "partner-a/a"), {}) == WAITING
