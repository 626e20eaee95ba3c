"""The scan pipeline end to end: real sftp uploads, real clamd, real Prefect, real webhooks.

One stack per module: the SFTP server (thread), the scan worker exactly as ``ssftp up`` runs it
(its own thread and event loop), a clamd of its own (so tests can stop and restart it), and a
local HTTP receiver for the webhooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

from deployments.worker import WorkerThread
from ssftp.config.reload import ConfigStore
from ssftp.layout import CLAIMS_DIR, DataLayout
from ssftp.names import safe_name
from ssftp.notify.webhooks import EVENT_HEADER, SIGNATURE_HEADER, sign
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.database import TEST_SIGNATURES
from testkit.files import EICAR, make_random_file, sha256_file
from testkit.sftp_client import run_sftp
from tests.support.config import write_config
from tests.support.gateway import unique_name
from tests.support.logs import json_lines, logging_into
from tests.support.pipeline import (
    INSTANCE,
    SCAN_LIMIT,
    SECRET,
    Pipeline,
    running_pipeline,
)
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("pipeline")) as stack:
        yield stack


def tree(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()]


def test_eicar_goes_to_quarantine_and_a_signed_webhook_arrives(pipeline: Pipeline,
                                                              workdir: Path):
    name = f"eicar-{unique_name()}.com"
    (workdir / name).write_bytes(EICAR)
    pipeline.upload(workdir, ["mkdir inbox", f"put {name} inbox/{name}"])

    quarantined = pipeline.quarantined(f"inbox/{name}")
    wait_for("EICAR in quarantine", quarantined.exists)
    assert quarantined.read_bytes() == EICAR
    assert not [p for p in tree(pipeline.layout.clean) if p.read_bytes() == EICAR]
    assert not pipeline.staged(f"inbox/{name}").exists()
    record = json.loads(quarantined.with_name(name + ".verdict.json").read_text())
    assert record["verdict"] == "infected"
    assert record["signature"].endswith(".UNOFFICIAL")

    wait_for("the virusFound webhook", lambda: pipeline.receiver.received("/hook", name))
    (request,) = pipeline.receiver.received("/hook", name)
    assert request.headers[EVENT_HEADER] == "virusFound"
    assert request.headers[SIGNATURE_HEADER] == sign(request.body, SECRET)
    body = request.json()
    assert body["username"] == "partner-a"
    assert body["filePath"] == f"staging/partner-a/inbox/{name}"
    assert body["destination"] == f"quarantine/partner-a/inbox/{name}"
    assert body["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert body["size"] == len(EICAR)
    assert body["signature"] == record["signature"]
    assert body["signature"] in body["scanMessage"]
    assert body["instance"] == INSTANCE
    assert body["timeGenerated"]
    assert body["flowRunId"]


@pytest.mark.parametrize("sub", ["plain.txt", "with space/a b.csv", "colon:dir/x:y.txt",
                                 "ünï/cødé ✓.bin", "deep/a/b/c/d.dat"])
def test_a_clean_file_lands_in_clean_with_the_same_sub_path(pipeline: Pipeline, workdir: Path,
                                                            sub: str):
    top = unique_name()
    local = make_random_file(workdir / "upload.bin", 200_000)
    parts = f"{top}/{sub}".split("/")
    mkdirs = [f'mkdir "{"/".join(parts[:i])}"' for i in range(1, len(parts))]
    pipeline.upload(workdir, [*mkdirs, f'put upload.bin "{top}/{sub}"'])

    cleaned = pipeline.clean(f"{top}/{sub}")
    wait_for(f"{sub} in clean", cleaned.exists)
    assert sha256_file(cleaned) == sha256_file(local)
    assert not tree(pipeline.layout.staging / "partner-a" / top)
    got = workdir / "got.bin"
    result = run_sftp(pipeline.server.port, "consumer-a", [f'get "{top}/{sub}" got.bin'],
                      cwd=workdir, password="consumer-pw")
    assert result.returncode == 0, result.stderr
    assert sha256_file(got) == sha256_file(local)


def test_a_dead_webhook_is_retried_and_does_not_hold_up_scanning(pipeline: Pipeline,
                                                                 workdir: Path):
    receiver = pipeline.receiver
    receiver.gate.clear()  # /dead now holds each delivery until the gate opens
    try:
        name = f"eicar-{unique_name()}.com"
        (workdir / name).write_bytes(EICAR)
        pipeline.upload(workdir, [f"put {name}"])
        wait_for("the first delivery to the dead endpoint",
                 lambda: [r for r in receiver.arrived if r.path == "/dead"
                          and r.json()["filePath"].endswith(name)])

        # That delivery is stuck (its timeout is 120 s); scanning must go on regardless.
        after = f"after-{unique_name()}.txt"
        (workdir / after).write_bytes(b"scanned while a webhook hangs\n")
        pipeline.upload(workdir, [f"put {after}"])
        wait_for("a later upload in clean", pipeline.clean(after).exists, timeout=60)
        assert not receiver.received("/dead", name), "the dead endpoint answered too early"
    finally:
        receiver.gate.set()
    wait_for("the first delivery and its two retries",
             lambda: len(receiver.received("/dead", name)) == 3)
    bodies = {request.body for request in receiver.received("/dead", name)}
    assert len(bodies) == 1, "every retry sends the same notification"

    async def notify_runs() -> list[str]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            runs = await client.read_flow_runs()
        return [run.state.type.value for run in runs
                if run.name.startswith("notify") and run.state is not None]

    wait_for("a failed notify run in Prefect",
             lambda: "FAILED" in asyncio.run(notify_runs()))
    outcomes = {(r["url"], r["delivered"]) for r in pipeline.audit()
                if r.get("event") == "webhook" and r["file"].endswith(name)}
    assert outcomes == {(f"{receiver.url}/hook", True), (f"{receiver.url}/dead", False)}


def test_with_clamd_stopped_files_stay_in_staging_then_go_to_clean(pipeline: Pipeline,
                                                                  workdir: Path):
    name = f"while-down-{unique_name()}.txt"
    (workdir / name).write_bytes(b"uploaded while clamd is down\n")
    pipeline.clamd.stop()
    try:
        pipeline.upload(workdir, [f"put {name}"])
        wait_for("the scanError webhook", lambda: pipeline.receiver.received("/hook", name))
        (request,) = pipeline.receiver.received("/hook", name)
        assert request.headers[EVENT_HEADER] == "scanError"
        assert request.json()["verdict"] == "error"
        assert request.headers[SIGNATURE_HEADER] == sign(request.body, SECRET)
        # The file went back to staging for a retry, whole, and nowhere else.
        wait_for("the file back in staging", pipeline.staged(name).exists)
        assert pipeline.staged(name).read_bytes() == b"uploaded while clamd is down\n"
        assert not pipeline.clean(name).exists()
        assert not pipeline.quarantined(name).exists()
        failures = [r for r in pipeline.audit() if r.get("event") == "scan"
                    and r["file"] == f"partner-a/{name}"]
        assert failures and all(r["verdict"] == "error" for r in failures)
    finally:
        pipeline.clamd = ClamdDaemon.start(pipeline.clamd_dir, database=TEST_SIGNATURES)
    wait_for("the file in clean once clamd is back", pipeline.clean(name).exists)
    assert pipeline.clean(name).read_bytes() == b"uploaded while clamd is down\n"
    assert not pipeline.staged(name).exists()
    # One scanError for the outage, not one per retry.
    assert len(pipeline.receiver.received("/hook", name)) == 1


def test_a_file_over_the_scan_limit_is_quarantined_as_unscannable(pipeline: Pipeline,
                                                                 workdir: Path):
    name = f"big-{unique_name()}.bin"
    make_random_file(workdir / name, SCAN_LIMIT + 1)
    pipeline.upload(workdir, [f"put {name}"])
    wait_for("the big file in quarantine", pipeline.quarantined(name).exists)
    record = json.loads(pipeline.quarantined(name + ".verdict.json").read_text())
    assert record["verdict"] == "unscannable"
    assert not pipeline.clean(name).exists()
    wait_for("the scanError webhook", lambda: pipeline.receiver.received("/hook", name))
    assert pipeline.receiver.received("/hook", name)[0].json()["event"] == "scanError"


def test_names_that_are_not_utf8_reach_their_areas_under_safe_names_and_the_worker_lives(
        pipeline: Pipeline, workdir: Path):
    """Another writer on the share (or a remote server's Latin-1 names) puts a directory and
    files named in bytes that are not UTF-8 into staging: each reaches clean/ or quarantine/
    once, under its safe name, and the scan worker goes on (watchfiles stopped, and the
    worker with it, at the first such name)."""
    top = pipeline.staged(f"latin1-{unique_name()}")
    directory = Path(os.fsdecode(os.fsencode(top) + b"/d\xe9"))
    directory.mkdir(parents=True)
    clean_file = Path(os.fsdecode(os.fsencode(directory) + b"/caf\xe9.txt"))
    infected = Path(os.fsdecode(os.fsencode(top) + b"/eicar-\xe9\x1b]0;x\x07.com"))
    clean_file.write_bytes(b"written in place by another writer\n")
    infected.write_bytes(EICAR)
    area = pipeline.layout.root
    cleaned = (area / "clean" / clean_file.relative_to(pipeline.layout.staging).parent.parent
               / safe_name(directory.name) / safe_name(clean_file.name))
    quarantined = (area / "quarantine" / infected.relative_to(pipeline.layout.staging).parent
                   / safe_name(infected.name))
    wait_for("both under safe names", lambda: cleaned.exists() and quarantined.exists())
    assert cleaned.read_bytes() == b"written in place by another writer\n"
    assert quarantined.read_bytes() == EICAR
    assert not tree(top)
    assert all(worker.alive for worker in pipeline.workers)
    name = f"after-{unique_name()}.txt"  # and the watch still sees new files
    (workdir / name).write_bytes(b"later")
    pipeline.upload(workdir, [f"put {name}"])
    wait_for("a later upload in clean", pipeline.clean(name).exists)


def test_an_eicar_upload_with_a_250_byte_name_is_quarantined_once_with_one_virus_found(
        pipeline: Pipeline, workdir: Path):
    """``<name>.verdict.json`` would pass the 255 bytes a name may have: the file was found,
    never moved, and retried for ever, each retry a new first failure with a scanError."""
    name = f"{unique_name()}-".ljust(246, "e") + ".com"
    assert len(name) == 250
    (workdir / name).write_bytes(EICAR)
    pipeline.upload(workdir, [f"put {name}"])
    wait_for("EICAR with a long name in quarantine", pipeline.quarantined(name).exists)
    wait_for("its virusFound webhook", lambda: pipeline.receiver.received("/hook", name))
    scans = [r for r in pipeline.audit() if r.get("event") == "scan"
             and r.get("file") == f"partner-a/{name}"]
    assert [(r["verdict"], r["destination"]) for r in scans] == [
        ("infected", f"quarantine/partner-a/{name}")]
    assert [r.json()["event"] for r in pipeline.receiver.received("/hook", name)] == [
        "virusFound"]


def test_a_scanner_killed_mid_scan_loses_nothing(pipeline: Pipeline, tmp_path: Path,
                                                 prefect_api: str):
    """A real ``ssftp worker`` is SIGKILLed while clamd holds its scan; a new one finishes,
    and the record says which worker judged the file (the one that finished it)."""
    layout = DataLayout.at(tmp_path / "data").create()
    config = write_config(tmp_path / "ssftp.yaml", f"""
    clamav:
      address: {pipeline.clamd.socket}
      timeout: 300
    scanning:
      stableSeconds: 0.1
    users:
      stagingDir:
        - directory: crash
          auth:
            username: crash
            password: crash-pw
    """)
    staged = layout.staging / "crash" / "survivor.txt"
    staged.parent.mkdir(parents=True)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    pipeline.clamd.process.send_signal(signal.SIGSTOP)
    worker = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "worker", "--config", str(config),
         "--data-dir", str(layout.root), "--name", "killed-1"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        wait_for("the worker to start",
                 lambda: (layout.log / "ssftp.log").exists()
                 and '"worker": "killed-1"' in (layout.log / "ssftp.log").read_text())
        temp = staged.with_name(".ssftp-tmp-upload")
        temp.write_bytes(b"must survive a crash\n")
        temp.rename(staged)
        claims = layout.staging / CLAIMS_DIR
        wait_for("the worker's claim", lambda: tree(claims) if claims.exists() else False)
        worker.kill()
        worker.wait()
    finally:
        pipeline.clamd.process.send_signal(signal.SIGCONT)
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    (claimed,) = tree(claims)
    assert claimed.read_bytes() == b"must survive a crash\n"
    assert not tree(layout.clean)

    restarted = WorkerThread(ConfigStore.open(config, layout), None, "takeover-1")
    with logging_into(layout.log) as audit_log:
        restarted.start()
        try:
            wait_for("the file in clean", (layout.clean / "crash" / "survivor.txt").exists)
        finally:
            restarted.stop(timeout=30)
    assert (layout.clean / "crash" / "survivor.txt").read_bytes() == b"must survive a crash\n"
    assert not tree(claims)
    assert [(event["file"], event["verdict"], event["worker"])
            for event in json_lines(audit_log)] == [
        ("crash/survivor.txt", "clean", "takeover-1")]


# A sparse file this big takes seconds of CPU to hash (~3 s per GiB here), so a small file
# staged once its scan has begun is scanned well before it: ordered, not timed.
BIG_SPARSE = 2 << 30


def publish(path: Path, data: bytes = b"", size: int | None = None) -> None:
    """Put a complete file into staging as ssftp's own writers do: a hidden temp name, then a
    rename. With ``size`` it is sparse: its one byte written at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".ssftp-tmp-{unique_name()}")
    with temp.open("wb") as handle:
        if size is not None:
            handle.seek(size - 1)
            data = b"x"
        handle.write(data)
    temp.rename(path)


def test_a_big_file_being_scanned_holds_up_no_later_file_of_another_partner(
        pipeline: Pipeline, tmp_path: Path):
    """The issue's sparse upload (40 GiB, one byte sent) held every other partner's file until
    it was judged: the next scan run started only once the big file's run ended. Here
    ``maxFileSize`` is raised so the big file really is hashed and scanned (clamd's own limit
    then calls it unscannable), and a small file of another partner, staged once the big one
    is claimed (its run has begun), must reach clean/ before the big one is judged."""
    layout = DataLayout.at(tmp_path / "data").create()
    config = write_config(tmp_path / "ssftp.yaml", f"""
    clamav:
      address: {pipeline.clamd.socket}
      maxFileSize: {2 * BIG_SPARSE}
    scanning:
      stableSeconds: 0.1
      batchWindowSeconds: 0.1
    users:
      stagingDir:
        - directory: big
          auth: {{username: big, password: big-pw}}
        - directory: small
          auth: {{username: small, password: small-pw}}
    """)
    big, small = f"big/huge-{unique_name()}.bin", f"small/report-{unique_name()}.csv"
    worker = WorkerThread(ConfigStore.open(config, layout), None)
    worker.start()
    try:
        publish(layout.staging / big, size=BIG_SPARSE)
        claims = layout.staging / CLAIMS_DIR
        wait_for("the big file's claim", lambda: claims.exists() and tree(claims))
        publish(layout.staging / small, b"a,b\n1,2\n")
        wait_for("the small file in clean/", (layout.clean / small).exists)
        assert not (layout.quarantine / big).exists(), "the big file was judged first"
        wait_for("the big file in quarantine", (layout.quarantine / big).exists)
    finally:
        worker.stop(timeout=60)
    verdicts = [(r["file"], r["verdict"]) for r in pipeline.audit()
                if r.get("event") == "scan" and r["file"] in (big, small)]
    assert verdicts == [(small, "clean"), (big, "unscannable")]
    record = json.loads((layout.quarantine / f"{big}.verdict.json").read_text())
    assert record["sha256"] and record["size"] == BIG_SPARSE


def test_a_thousand_small_files_in_one_session_all_end_clean_with_audit_records(
        pipeline: Pipeline, workdir: Path):
    top = f"batch-{unique_name()}"
    local = workdir / top
    local.mkdir()
    for number in range(1000):
        (local / f"f{number:04}.txt").write_bytes(f"small file {number}\n".encode() * 4)
    pipeline.upload(workdir, [f"put -r {top}"])

    target = pipeline.clean(top)
    wait_for("1000 files in clean",
             lambda: target.exists() and len(list(target.iterdir())) == 1000, timeout=300)
    for number in range(1000):
        name = f"f{number:04}.txt"
        assert (target / name).read_bytes() == f"small file {number}\n".encode() * 4
    records = {r["file"]: r for r in pipeline.audit()
               if r.get("event") == "scan" and str(r["file"]).startswith(f"partner-a/{top}/")}
    assert len(records) == 1000
    assert all(r["verdict"] == "clean" and r["sha256"] and r["flow_run_id"]
               for r in records.values())
    # Batched: far fewer scan runs than files.
    runs = {r["flow_run_id"] for r in records.values()}
    assert len(runs) < 200, f"{len(runs)} scan runs for 1000 files"


def test_two_workers_share_the_staged_files_each_batching_only_its_own(
        pipeline: Pipeline, tmp_path: Path, prefect_api: str):
    """Two workers on one data root: every file is scanned once, each worker batches its own
    share (no file is in both workers' runs), each record names its worker; once one stops,
    the other takes every file at once."""
    layout = DataLayout.at(tmp_path / "data").create()
    config = write_config(tmp_path / "ssftp.yaml", f"""
    instanceName: shared-{unique_name()}
    clamav:
      address: {pipeline.clamd.socket}
    scanning:
      stableSeconds: 0.1
      batchWindowSeconds: 0.2
    users:
      stagingDir:
        - directory: shared
          auth:
            username: shared
            password: shared-pw
    """)
    workers = {name: WorkerThread(ConfigStore.open(config, layout), None, name)
               for name in ("share-a", "share-b")}
    with logging_into(layout.log) as audit_log:
        for worker in workers.values():
            worker.start()
        try:
            def both_live() -> bool:
                return all(worker.scan_worker is not None
                           and worker.scan_worker.watcher.queue.share is not None
                           and len(worker.scan_worker.watcher.queue.share.workers) == 2
                           for worker in workers.values())
            wait_for("both workers to see each other", both_live)
            for worker in workers.values():  # a busy owner (SQLite) never looks stuck here
                worker.scan_worker.watcher.queue.share.takeover_seconds = 600
            names = [f"f{n:03d}.txt" for n in range(60)]
            for name in names:
                publish(layout.staging / "shared" / name, name.encode())
            wait_for("every file in clean", lambda: all(
                (layout.clean / "shared" / name).exists() for name in names))
            workers["share-a"].stop(timeout=30)
            wait_for("share-b alone", lambda: workers["share-b"].scan_worker.watcher.queue
                     .share.workers == ("share-b",))
            late = [f"late{n}.txt" for n in range(10)]
            for name in late:
                publish(layout.staging / "shared" / name, name.encode())
            wait_for("the late files in clean", lambda: all(
                (layout.clean / "shared" / name).exists() for name in late))
        finally:
            for worker in workers.values():
                worker.stop(timeout=30)
    records = [event for event in json_lines(audit_log) if event.get("event") == "scan"]
    assert sorted(event["file"] for event in records) == sorted(
        f"shared/{name}" for name in names + late)  # each scanned once
    judged = {name: [event["worker"] for event in records
                     if event["file"] in {f"shared/{file}" for file in names}].count(name)
              for name in workers}
    assert min(judged.values()) * 2 >= max(judged.values()), judged
    assert {event["worker"] for event in records if event["file"].startswith("shared/late")
            } == {"share-b"}
    batched = asyncio.run(files_of_runs(("worker:share-a", "worker:share-b")))
    assert not batched["worker:share-a"] & batched["worker:share-b"]  # none batched by both
    assert batched["worker:share-a"] | batched["worker:share-b"] == {
        f"staging/shared/{name}" for name in names + late}


async def files_of_runs(tags: tuple[str, ...]) -> dict[str, set[str]]:
    """The files in the parameters of the scan runs tagged with each of ``tags``."""
    async with get_client() as client:
        return {tag: {path for run in await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
                      for path in run.parameters["paths"]}
                for tag in tags}
