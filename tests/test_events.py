"""Prefect events per file outcome (flows.events), and an Automation that reacts to one.

The events are built by plain functions, tested directly. Then, with real parts: scans through
the scan flow on the session's Prefect test harness with a real clamd, transfers by the
download and upload flows against a real OpenSSH sshd, a real ``ssftp worker`` whose clamd
fails every scan, an Automation created through the API whose ``call-webhook`` action
reaches a real HTTP receiver. Events are read back through the API (``/events/filter``); one
file's events along a chain of two ``ssftp up`` are in tests/test_chain.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncssh
import pytest
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import ReceivedEvent, ResourceSpecification

from flows.events import DOWNLOADED, UPLOADED, FileEvent, scan_event, transfer_event
from flows.scan import ScanRuns
from ssftp.config.schema import SsftpConfig
from ssftp.layout import DataLayout
from ssftp.notify.outbox import Outbox
from ssftp.notify.owed import CLEAN, INFECTED, UNSCANNABLE, WAITING, owed
from ssftp.notify.record import OutboxRecorder
from ssftp.scan.claims import Claims
from ssftp.scan.clamd import ClamdClient, VerdictKind
from ssftp.scan.owners import StagingOwners
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.scanner import Scanner
from ssftp.transfer.local import TransferResult
from testkit.openssh_server import OpenSshServer, free_port, sshd_available
from tests.support import WebhookReceiver, unique_name, wait_for
from tests.test_outage import Ssftp, outage_config
from tests.test_scan_core import EICAR, stage
from tests.test_transfer_flows import Instance, client_key, sshd  # noqa: F401 (fixtures)

SHA = "ab" * 32
RUN_ID = "0b9f3a52-1f6e-4c51-9d8c-3f8f6f0d2b11"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


# --- reading events back through the API ------------------------------------------------------


async def _read_events(names: list[str], instance: str,
                       resource_ids: list[str] | None = None) -> list[ReceivedEvent]:
    resource = EventResourceFilter(id_prefix=["ssftp.file."], id=resource_ids,
                                   labels=ResourceSpecification({"ssftp.instance": instance}))
    async with get_client() as client:
        page = await client.read_events(
            EventFilter(event=EventNameFilter(name=names), resource=resource), limit=50)
    return page.events


def events_of(names: list[str], instance: str, count: int,
              resource_ids: list[str] | None = None) -> list[ReceivedEvent]:
    """The events of these names from ``instance``, once at least ``count`` are stored (the
    server persists them in batches)."""
    found: list[ReceivedEvent] = []

    def stored() -> bool:
        found[:] = asyncio.run(_read_events(names, instance, resource_ids))
        return len(found) >= count

    wait_for(stored, f"{count} event(s) {names} from {instance}", timeout=60)
    return found


def scan_runs(layout: DataLayout, client: ClamdClient, owners: StagingOwners,
              instance: str) -> ScanRuns:
    """Scan runs recording as a worker's do (no webhooks configured): so their outcomes raise
    events."""
    config = SsftpConfig.model_validate({"instanceName": instance})
    recorder = OutboxRecorder(Outbox(layout.outbox), lambda: config)
    return ScanRuns(Scanner(layout, client, owners=owners, instance=instance,
                            claims=Claims(layout.staging), recorder=recorder))


def related_of(event: ReceivedEvent) -> dict[str, str]:
    return {item.role: item.id for item in event.related}


def test_a_scan_run_emits_infected_and_clean_with_the_files_sha256(prefect_api, layout,
                                                                    client, owners):
    instance = unique_name()
    stage(layout, "partner-a/eicar.com", EICAR)
    clean = stage(layout, "partner-a/report.csv", b"a,b\n1,2\n")
    results = asyncio.run(scan_runs(layout, client, owners, instance).scan_batch(
        [layout.staging / "partner-a/eicar.com", clean]))
    run_id = results[0].flow_run_id
    found = {event.event: event for event in events_of([CLEAN, INFECTED], instance, 2)}
    assert set(found) == {CLEAN, INFECTED}
    infected, passed = found[INFECTED], found[CLEAN]
    assert infected.resource.id == f"ssftp.file.{sha256(EICAR)}"
    assert passed.resource.id == "ssftp.file." + sha256(b"a,b\n1,2\n")
    assert infected.resource["ssftp.path"] == "partner-a/eicar.com"
    assert infected.resource["ssftp.size"] == str(len(EICAR))
    assert infected.resource["ssftp.account"] == "partner-a"
    (found_virus,) = [r.signature for r in results if r.verdict is VerdictKind.INFECTED]
    assert infected.resource["ssftp.signature"] == found_virus
    assert passed.resource["ssftp.signature"] == ""
    for event in (infected, passed):
        assert related_of(event)["flow-run"] == f"prefect.flow-run.{run_id}"
        assert related_of(event)["account"] == "ssftp.account.partner-a"
        assert related_of(event)["instance"] == f"ssftp.instance.{instance}"


# --- an Automation on ssftp.file.infected -----------------------------------------------------


def readme_automation() -> Callable[[str, str], Awaitable[Automation]]:
    """``create_infection_automation`` as the README's "React to an infection" writes it: the
    test runs that very code, so the README cannot drift from what works."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### React to an infection"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    namespace: dict[str, Any] = {}
    exec(code[:code.index("```")], namespace)
    return namespace["create_infection_automation"]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    yield hooks
    hooks.stop()


def test_an_automation_on_infected_calls_its_webhook_for_the_infected_file_only(
        prefect_api, layout, client, owners, receiver):
    instance = unique_name()
    automation = asyncio.run(readme_automation()(instance, receiver.url + "/infected"))
    runs = scan_runs(layout, client, owners, instance)
    try:
        # The clean file first, in a run of its own: the triggers service takes events in
        # order, so when the infection's call arrives the clean event has been evaluated too.
        asyncio.run(runs.scan_batch([stage(layout, "partner-a/report.csv", b"ok\n")]))
        events_of([CLEAN], instance, 1)
        asyncio.run(runs.scan_batch([stage(layout, "partner-b/eicar.com", EICAR)]))
        wait_for(lambda: receiver.requests, "the Automation's webhook call", timeout=60)
    finally:
        asyncio.run(automation.adelete())
    (call,) = receiver.requests
    assert call.json() == {"file": f"ssftp.file.{sha256(EICAR)}",
                           "path": "partner-b/eicar.com",
                           "signature": call.json()["signature"]}
    assert "EICAR" in str(call.json()["signature"])


# --- waiting: once per file, however often it is retried --------------------------------------


class FailingClamd:
    """Something on a TCP port that takes every scan and answers an error: each file fails
    on its own and is retried with backoff, with no outage to hold the retries back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b"stream: Can't allocate memory ERROR\0")
                except OSError:
                    pass

    def stop(self) -> None:
        self.sock.close()


def test_a_file_that_keeps_failing_raises_waiting_once(tmp_path, prefect_api, receiver):
    clamd = FailingClamd()
    data = tmp_path / "data"
    (data / "staging" / "drop").mkdir(parents=True)
    instance = unique_name()
    config = outage_config(tmp_path, f"127.0.0.1:{clamd.port}", receiver)
    config.write_text(config.read_text() + f"instanceName: {instance}\n")
    worker = Ssftp(tmp_path, config, data, prefect_api, "worker")
    try:
        wait_for(lambda: worker.events("scan worker started") or worker.proc.poll() is not None,
                 "the worker to start")
        assert worker.proc.poll() is None, worker.output()
        (data / "staging" / "drop" / "retried.txt").write_bytes(b"retried\n")
        wait_for(lambda: len(worker.audit("drop/retried.txt")) >= 3,
                 "three failed attempts at the file")
    finally:
        code = worker.stop()
        clamd.stop()
    assert code == 0, worker.output()
    sha = sha256(b"retried\n")
    events = events_of([WAITING], instance, 1, [f"ssftp.file.{sha}"])
    assert len(events) == 1, [event.occurred for event in events]
    assert events[0].resource["ssftp.path"] == "drop/retried.txt"
    assert events[0].resource["ssftp.verdict"] == "error"
    assert len(receiver.received("/hook", "retried.txt")) == 1  # the same rule's webhook


# --- transfers: a downloader and an uploader, against a real sshd ----------------------------


@contextlib.contextmanager
def claimed_at_once(path: Path, to: Path) -> Iterator[None]:
    """Move ``path`` away the moment it appears, as a scanner's claim would."""
    done = threading.Event()

    def claim() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                path.rename(to)
                return
            time.sleep(0.001)

    thread = threading.Thread(target=claim, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.mark.skipif(not sshd_available(), reason="OpenSSH sshd is not installed")
def test_downloads_and_uploads_emit_one_event_per_file_moved(
        tmp_path: Path, client_key: asyncssh.SSHKey, sshd: OpenSshServer):  # noqa: F811
    instance = Instance(tmp_path, client_key, sshd)
    name = instance.layout.root.parent.name  # the instanceName Instance.write sets
    (instance.remote / "pulled.txt").write_bytes(b"pulled\n")
    outgoing = instance.layout.clean / "push" / "sent.txt"
    outgoing.parent.mkdir(parents=True)
    outgoing.write_bytes(b"sent\n")
    instance.write(downloaders=[instance.entry("download", "pull")],
                   uploaders=[instance.entry("upload", "push")])
    # The scanner claims a download within moments of its publish, long before the run ends:
    # the event must still carry its sha256 (on main it then went out unhashed).
    taken = tmp_path / "taken.txt"
    with claimed_at_once(instance.layout.staging / "pull" / "pulled.txt", taken):
        asyncio.run(instance.download("pull"))
    assert taken.read_bytes() == b"pulled\n"
    asyncio.run(instance.upload("push"))
    found = {event.event: event for event in events_of([DOWNLOADED, UPLOADED], name, 2)}
    pulled, sent = found[DOWNLOADED], found[UPLOADED]
    assert pulled.resource.id == "ssftp.file." + sha256(b"pulled\n")
    assert pulled.resource["ssftp.path"] == "pull/pulled.txt"
    assert pulled.resource["ssftp.size"] == "7"
    assert related_of(pulled)["downloader"] == "ssftp.downloader.pull"
    assert sent.resource.id == "ssftp.file." + sha256(b"sent\n")
    assert sent.resource["ssftp.path"] == "push/sent.txt"
    assert related_of(sent)["uploader"] == "ssftp.uploader.push"
    assert asyncio.run(run_name(related_of(pulled)["flow-run"])) == "download pull"
    assert asyncio.run(run_name(related_of(sent)["flow-run"])) == "upload push"


async def run_name(resource_id: str) -> str:
    async with get_client() as client:
        run = await client.read_flow_run(UUID(resource_id.removeprefix("prefect.flow-run.")))
    return run.name
