"""flows.events as plain functions: the Prefect event of each file outcome (its resource is the
file's sha256) and of each file a scheduled transfer moved. The events emitted by real runs
are in tests/integration/test_flows_events.py."""

from __future__ import annotations

from flows.events import (
    DOWNLOADED,
    UPLOADED,
    FileEvent,
    clean_events_on,
    is_told,
    scan_event,
    transfer_event,
)
from ssftp.config.schema import SsftpConfig
from ssftp.notify.owed import CLEAN, INFECTED, UNSCANNABLE, WAITING, owed
from ssftp.scan.queue import PrefectDatabase
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.verdict import VerdictKind
from ssftp.transfer.local import TransferResult

SHA = "ab" * 32
RUN_ID = "0b9f3a52-1f6e-4c51-9d8c-3f8f6f0d2b11"


def result(verdict: VerdictKind, area: Area, *, sha256: str | None = SHA,
           file: str = "partner-a/in/report.pdf", signature: str | None = None) -> ScanResult:
    return ScanResult(file=file, account="partner-a", size=1234, sha256=sha256,
                      verdict=verdict, signature=signature, detail="d",
                      source=f"staging/{file}", destination=f"{area}/{file}", area=area,
                      time="t", flow_run_id=RUN_ID)


def outcome_event(result: ScanResult, instance: str, failures: int = 0) -> FileEvent | None:
    """The event a scan outcome raises, as the scan flow emits it (``ScanResult.event``, which
    the record step sets from the rule)."""
    name = owed(result, failures, SsftpConfig.model_validate({})).event
    return None if name is None else scan_event(name, result, instance)


def related_ids(event_related: list[dict[str, str]]) -> dict[str, str]:
    return {item["prefect.resource.role"]: item["prefect.resource.id"] for item in event_related}


# --- the events, directly ---------------------------------------------------------------------


def test_an_infected_file_is_its_sha256_with_labels_and_related_resources():
    event = outcome_event(result(VerdictKind.INFECTED, Area.QUARANTINE,
                                 signature="Eicar-Signature"), "gw-1")
    assert event is not None
    assert event.name == INFECTED
    assert event.resource == {
        "prefect.resource.id": f"ssftp.file.{SHA}", "prefect.resource.name":
        "partner-a/in/report.pdf", "ssftp.path": "partner-a/in/report.pdf",
        "ssftp.size": "1234", "ssftp.account": "partner-a", "ssftp.instance": "gw-1",
        "ssftp.signature": "Eicar-Signature", "ssftp.verdict": "infected"}
    assert related_ids(event.related) == {"flow-run": f"prefect.flow-run.{RUN_ID}",
                                          "account": "ssftp.account.partner-a",
                                          "instance": "ssftp.instance.gw-1"}
    assert event.payload["destination"] == "quarantine/partner-a/in/report.pdf"


def test_each_outcome_has_its_event_and_a_retried_file_left_in_staging_none():
    assert outcome_event(result(VerdictKind.CLEAN, Area.CLEAN), "gw").name == CLEAN  # type: ignore[union-attr]
    unscanned = outcome_event(result(VerdictKind.UNSCANNED, Area.CLEAN), "gw")
    assert unscanned is not None and unscanned.name == CLEAN
    assert unscanned.resource["ssftp.verdict"] == "unscanned"
    unscannable = outcome_event(result(VerdictKind.UNSCANNABLE, Area.QUARANTINE), "gw")
    assert unscannable is not None and unscannable.name == UNSCANNABLE
    assert unscannable.resource["ssftp.signature"] == ""
    assert outcome_event(result(VerdictKind.ERROR, Area.STAGING), "gw", failures=1) is None


def test_waiting_is_raised_on_the_first_failure_only_as_the_scan_error_webhook():
    waiting = result(VerdictKind.ERROR, Area.STAGING)
    first = outcome_event(waiting, "gw", failures=0)
    assert first is not None and first.name == WAITING
    assert outcome_event(waiting, "gw", failures=1) is None
    clean = outcome_event(result(VerdictKind.CLEAN, Area.CLEAN), "gw", failures=0)
    assert clean is not None and clean.name == CLEAN


def test_a_file_without_a_hash_is_named_by_instance_and_path_all_printable():
    odd = "partner-a/bad\nname\udcff.bin"  # a newline, and a byte that is not UTF-8
    event = outcome_event(result(VerdictKind.UNSCANNABLE, Area.QUARANTINE, sha256=None,
                                 file=odd), "gw")
    assert event is not None
    assert event.resource["prefect.resource.id"] == \
        "ssftp.file.unhashed.gw.partner-a/bad\\nname\\xff.bin"
    assert event.resource["ssftp.path"] == "partner-a/bad\\nname\\xff.bin"
    assert all(value.isprintable() for value in event.resource.values())


def test_a_transfer_event_names_its_entry_and_the_file_as_scans_do():
    moved = TransferResult("in/report.pdf", 1234, "downloaded", "remote copy deleted", SHA)
    event = transfer_event(moved, path="pulled/in/report.pdf", account="downloader:pull-x",
                           instance="gw", flow_run_id=RUN_ID, entry=("downloader", "pull-x"))
    assert event.name == DOWNLOADED
    assert event.resource["prefect.resource.id"] == f"ssftp.file.{SHA}"
    assert event.resource["ssftp.path"] == "pulled/in/report.pdf"
    assert event.resource["ssftp.size"] == "1234"
    assert related_ids(event.related)["downloader"] == "ssftp.downloader.pull-x"
    assert related_ids(event.related)["account"] == "ssftp.account.downloader:pull-x"
    uploaded = transfer_event(TransferResult("acme/x", 1, "uploaded"), path="acme/x",
                              account=None, instance="gw", flow_run_id=None,
                              entry=("uploader", "push"))
    assert uploaded.name == UPLOADED
    assert set(related_ids(uploaded.related)) == {"instance", "uploader"}


def test_clean_files_are_events_by_default_only_on_a_prefect_on_postgresql():
    assert clean_events_on("auto", PrefectDatabase.POSTGRESQL)
    assert not clean_events_on("auto", PrefectDatabase.SQLITE)
    assert not clean_events_on("auto", None)  # another's server: its database is not known
    assert clean_events_on(True, PrefectDatabase.SQLITE)
    assert not clean_events_on(False, PrefectDatabase.POSTGRESQL)
    assert [event for event in (CLEAN, INFECTED, UNSCANNABLE, WAITING)
            if is_told(event, clean_events=False)] == [INFECTED, UNSCANNABLE, WAITING]
    assert is_told(CLEAN, clean_events=True)
