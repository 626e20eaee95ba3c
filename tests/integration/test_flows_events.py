"""Prefect events per file outcome (flows.events) emitted by real runs.

Scans through the scan flow on the session's Prefect test harness with a real clamd, transfers
by the download and upload flows against a real OpenSSH sshd. Events are read back through the
API (``/events/filter``). The events as plain functions are in tests/unit/test_flows_events.py;
a real ``ssftp worker``'s in tests/e2e/test_worker_events.py; one file's events along a chain
of two ``ssftp up`` in tests/e2e/test_chain.py; the Automation that reacts to
``ssftp.file.infected`` (``ssftp automations install``) in
tests/integration/test_deployments_automations.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import asyncssh
import pytest
from prefect.client.orchestration import get_client
from prefect.events.schemas.events import ReceivedEvent

from flows.events import DOWNLOADED, UPLOADED
from flows.scan import ScanRuns
from ssftp.config.schema import SsftpConfig
from ssftp.layout import DataLayout
from ssftp.notify.outbox import Outbox
from ssftp.notify.owed import CLEAN, INFECTED
from ssftp.notify.record import OutboxRecorder
from ssftp.scan.claims import Claims
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from ssftp.scan.scanner import Scanner
from ssftp.scan.verdict import VerdictKind
from testkit.files import EICAR
from testkit.openssh_server import OpenSshServer, sshd_available
from tests.support.events import events_of
from tests.support.gateway import unique_name
from tests.support.scanning import sha256, stage
from tests.support.transfers import Instance


def scan_runs(layout: DataLayout, client: ClamdClient, owners: StagingOwners,
              instance: str, clean_events: bool = True) -> ScanRuns:
    """Scan runs recording as a worker's do (no webhooks configured): so their outcomes raise
    events."""
    config = SsftpConfig.model_validate({"instanceName": instance})
    recorder = OutboxRecorder(Outbox(layout.outbox), lambda: config)
    return ScanRuns(Scanner(layout, client, owners=owners, instance=instance,
                            claims=Claims(layout.staging), recorder=recorder),
                    clean_events=lambda: clean_events)


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


def test_with_clean_file_events_off_only_what_is_not_clean_is_an_event(prefect_api, layout,
                                                                        client, owners):
    """``scanning.cleanFileEvents`` off (the default on SQLite): a clean file raises no event,
    an infected one still does. The clean file's run goes first: the events worker sends in
    order, so the infected event stored means the clean one would have been."""
    instance = unique_name()
    runs = scan_runs(layout, client, owners, instance, clean_events=False)
    asyncio.run(runs.scan_batch([stage(layout, "partner-a/report.csv", b"a,b\n")]))
    asyncio.run(runs.scan_batch([stage(layout, "partner-a/eicar.com", EICAR)]))
    (infected,) = events_of([INFECTED], instance, 1)
    assert infected.resource["ssftp.path"] == "partner-a/eicar.com"
    assert events_of([CLEAN, INFECTED], instance, 1) == [infected]


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
        tmp_path: Path, client_key: asyncssh.SSHKey, sshd: OpenSshServer):
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
