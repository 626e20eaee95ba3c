"""The second look end to end: files accepted over SFTP with yesterday's signatures, a signature
published afterwards at a ``file://`` custom URL, and the worker (exactly as ``ssftp up`` runs
it) fetching it on its ``signatures`` schedule and finding the file it now detects, with nobody
touching anything: out of clean/ into quarantine/, with its verdict record, a virusFound webhook
and an audit record that say ``rescan`` and name the new database; the other files stay, each
with a record of the look; a consumer holding the file reads it whole; the look is a Prefect
``rescan`` run. ``ssftp rescan`` does the same on demand.

The stack: the SFTP server (thread), the scan worker (thread) serving the signatures
deployment, a clamd of its own on a signature directory ssftp updates (real freshclam, offline:
the official databases off), a webhook receiver, Prefect's test harness.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun

from deployments.rescan_watcher import RESCAN_LOCK
from ssftp.layout import DataLayout
from ssftp.run_lock import exclusive_run
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import TEST_SIGNATURES
from ssftp.scan.signatures import write_generation
from tests.support.cli import SSFTP
from tests.support.config import write_config
from tests.support.gateway import ServerThread, unique_name
from tests.support.pipeline import INSTANCE, Pipeline, pipeline_config
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver

# The content signatures are made for here (an .ndb body pattern each).
MARKER = b"ssftp-rescan-e2e-marker"
# The signature updates' schedule (a real deployment's is an hour; this one's runs are
# started by the test).
UPDATE_SECONDS = 3600


def signature_line(name: str, marker: bytes) -> str:
    return f"{name}:0:*:{marker.hex()}\n"


@dataclass
class Stack:
    pipeline: Pipeline
    database: Path  # what the stack's clamd loads, and ssftp updates
    published: Path  # the custom URL's file: the site's own signatures


def publish_directly(database: Path, clamd: ClamdDaemon, name: str, marker: bytes) -> str:
    """What an update does to a database, done by hand (for a data root no worker updates): a
    signature file, a new generation, clamd reloaded; returns the generation."""
    (database / f"{name}.ndb").write_text(signature_line(name, marker))
    generation = write_generation(database)
    client = ClamdClient(clamd.address, timeout=30)
    assert client.command("RELOAD") == "RELOADING"
    wait_for("clamd to load the new signatures",
             lambda: client.signatures().generation == generation)
    return generation


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("rescan")
    database = root / "database"
    shutil.copytree(TEST_SIGNATURES, database, ignore=shutil.ignore_patterns("*.md"))
    write_generation(database)
    published = root / "site" / "site.ndb"
    published.parent.mkdir()
    published.write_text(signature_line("Site.Nothing.Yet", b"matches no file of the tests"))
    receiver = WebhookReceiver()
    clamd = ClamdDaemon.start(root / "clamd", database=database)
    text = pipeline_config(clamd.socket, receiver).replace("      maxFileSize:", f"""\
      signatures:
        official: false
        customUrls: [file://{published}]
        databaseDirectory: {database}
        updateInterval: {UPDATE_SECONDS}
      maxFileSize:""")
    config = write_config(root / "ssftp.yaml", text)
    server = ServerThread(config, root / "data")
    pipeline = Pipeline(root, DataLayout.at(root / "data"), config, server, receiver,
                        root / "clamd", clamd)
    with pytest.MonkeyPatch.context() as patch:
        # The worker asks clamd what it has loaded every 5 s; a test need not wait that long.
        patch.setattr("deployments.rescan_watcher.LOOK_SECONDS", 0.2)
        pipeline.start_worker()
        yield Stack(pipeline, database, published)
        for worker in pipeline.workers:
            worker.stop(timeout=30)
    server.stop()
    clamd.stop()
    receiver.stop()


def rescan_records(pipeline: Pipeline, file: str) -> list[dict[str, object]]:
    return [record for record in pipeline.audit()
            if record.get("event") == "rescan" and record.get("file") == file]


async def flow_runs(named: str) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_=named)))


async def start_scheduled_update(pipeline: Pipeline) -> None:
    """Start the run that the signatures schedule starts next: the test harness's Prefect
    server runs no scheduler, so the test asks for it; the worker's runner runs it (freshclam
    in a subprocess), as it runs the scheduled ones."""
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"signatures/{INSTANCE}")
        assert [f"{item.schedule.interval.total_seconds():g}"  # type: ignore[union-attr]
                for item in deployment.schedules] == [f"{UPDATE_SECONDS:g}"]
        await client.create_flow_run_from_deployment(deployment.id)


def test_a_signature_published_after_acceptance_catches_the_file_with_nobody_touching_it(
        stack: Stack, workdir: Path):
    pipeline = stack.pipeline
    tag = unique_name()
    marker = MARKER + tag.encode()
    (workdir / "report.txt").write_bytes(b"accepted yesterday, " + marker + b", malware today")
    (workdir / "notes.txt").write_bytes(b"harmless then and now")
    pipeline.upload(workdir, [f"mkdir {tag}", f"put report.txt {tag}/report.txt",
                              f"put notes.txt {tag}/notes.txt"])
    report, notes = pipeline.clean(f"{tag}/report.txt"), pipeline.clean(f"{tag}/notes.txt")
    wait_for("both files in clean/", lambda: report.exists() and notes.exists())
    quarantined = pipeline.quarantined(f"{tag}/report.txt")
    with report.open("rb") as reader:  # a consumer downloading it right now
        head = reader.read(10)
        # The site publishes today's signature; ssftp's signatures deployment fetches it.
        stack.published.write_text(signature_line(f"Site.{tag}", marker))
        asyncio.run(start_scheduled_update(pipeline))
        wait_for("the rescan to quarantine report.txt", quarantined.exists, timeout=120)
        assert head + reader.read() == quarantined.read_bytes()
    assert not report.exists()
    assert notes.read_bytes() == b"harmless then and now"
    database = ClamdClient(pipeline.clamd.address).signatures().database
    verdict = pipeline.quarantined(f"{tag}/report.txt.verdict.json").read_text()
    for needle in ('"reason": "rescan"', f'"signature": "Site.{tag}.UNOFFICIAL"',
                   f'"database": "{database}"'):
        assert needle in verdict
    wait_for("the virusFound webhook", lambda: pipeline.receiver.received("/hook", "report.txt"))
    (hook,) = pipeline.receiver.received("/hook", "report.txt")
    body = hook.json()
    assert (body["event"], body["reason"], body["database"]) == (
        "virusFound", "rescan", database)
    assert body["filePath"] == f"clean/partner-a/{tag}/report.txt"
    (moved,) = rescan_records(pipeline, f"partner-a/{tag}/report.txt")
    assert (moved["verdict"], moved["destination"]) == (
        "infected", f"quarantine/partner-a/{tag}/report.txt")
    wait_for("the record of notes.txt's look",
             lambda: rescan_records(pipeline, f"partner-a/{tag}/notes.txt"))
    # Looked at once, or twice: its scan run may hand it in as judged by older signatures
    # after the rescan had listed it (a look too many is the safe side).
    looks = rescan_records(pipeline, f"partner-a/{tag}/notes.txt")
    assert {(looked["verdict"], looked["database"]) for looked in looks} == {
        ("clean", database)}
    runs = asyncio.run(flow_runs("rescan"))
    assert any(run.state_name == "Quarantined" and "infected" in run.tags for run in runs)
    updates = asyncio.run(flow_runs("update signatures"))
    assert any(run.state_name == "Updated" for run in updates)


def test_ssftp_rescan_on_demand_says_what_it_found_and_moves_it(stack: Stack, tmp_path: Path):
    """On a data root of its own (no worker looks at it): exit 1 when something moved, and the
    line names it; 0 once nothing is found; a rescan of quarantine/ reports what is no longer
    detected and moves nothing; a second rescan at once is refused in one line."""
    layout = DataLayout.at(tmp_path / "data").create()
    config = write_config(tmp_path / "ssftp.yaml",
                          pipeline_config(stack.pipeline.clamd.socket, stack.pipeline.receiver))
    tag = unique_name()
    marker = MARKER + tag.encode() + b"-cli"
    planted = layout.clean / "partner-a" / "cli.bin"
    kept = layout.clean / "partner-a" / "ok.txt"
    false_positive = layout.quarantine / "partner-a" / "fp.bin"
    for path, data in ((planted, marker), (kept, b"fine"), (false_positive, b"fine too")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def rescan(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SSFTP, "rescan", "--config", str(config), "--data-dir",
                               str(layout.root), *extra],
                              capture_output=True, text=True, timeout=120)

    assert rescan().returncode == 0  # yesterday's signatures find nothing
    publish_directly(stack.database, stack.pipeline.clamd, f"Cli.{tag}", marker)
    found = rescan()
    assert found.returncode == 1, found.stdout + found.stderr
    assert (f"clean/partner-a/cli.bin: Cli.{tag}.UNOFFICIAL -> quarantine/partner-a/cli.bin"
            in found.stdout)
    assert "rescanned 2 file(s)" in found.stdout and "1 found, 0 not scanned" in found.stdout
    assert (layout.quarantine / "partner-a" / "cli.bin").read_bytes() == marker
    assert not planted.exists() and kept.read_bytes() == b"fine"
    assert rescan().returncode == 0
    reported = rescan("--area", "quarantine")
    assert reported.returncode == 1, reported.stdout + reported.stderr
    assert "quarantine/partner-a/fp.bin: no longer detected" in reported.stdout
    assert "cli.bin" not in reported.stdout
    assert false_positive.read_bytes() == b"fine too"
    with exclusive_run(layout.system, *RESCAN_LOCK) as ours:
        assert ours
        busy = rescan()
    assert busy.returncode == 2
    assert busy.stderr.strip().splitlines() == [
        "ssftp rescan: a rescan of this data root is running already (the worker's, or "
        "another `ssftp rescan`); try again when it is done"]
