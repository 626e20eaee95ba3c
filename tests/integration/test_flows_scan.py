"""Scan runs an operator can read in the Prefect UI, run for real: runs through the Prefect test
harness and a real clamd, their state, name, tags and parameters read back through the API.
The wording itself, as plain functions, is in tests/unit/test_flows_scan.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.concurrency.asyncio import concurrency
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.artifacts import artifact_key
from flows.clamd_budget import limit_name
from flows.scan import (
    SUMMARY_TABLE_KEY,
    VERDICT_TABLE_KEY,
    ScanRuns,
)
from ssftp.addresses import ClamdAddress
from ssftp.layout import DataLayout
from ssftp.scan.claims import Claims
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from ssftp.scan.queue import Lane
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.scanner import Scanner
from ssftp.scan.verdict import VerdictKind
from testkit.files import EICAR
from tests.support.scanning import files_under, stage
from tests.support.waiting import wait_for_async

INSTANCE = "runs-test"
WORKER = "scanner-1"

# --- real runs: the Prefect harness and a real clamd ----------------------------------------



def scanner_for(layout: DataLayout, client: ClamdClient, owners: StagingOwners) -> Scanner:
    return Scanner(layout, client, owners=owners, instance=INSTANCE,
                   claims=Claims(layout.staging), worker=WORKER)


async def run_and_read(runs: ScanRuns, paths: list[Path]
                       ) -> tuple[list[ScanResult], FlowRun, dict[str, list[dict[str, Any]]]]:
    """Scan through the flow, then read the run and its tables back through the API."""
    results = await runs.scan_batch(paths)
    run_id = results[0].flow_run_id
    assert run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(UUID(run_id))
        artifacts = await client.read_artifacts()
    # A table artifact's data comes back as its JSON text.
    tables = {artifact.key: json.loads(str(artifact.data)) for artifact in artifacts
              if artifact.flow_run_id == UUID(run_id) and artifact.key is not None}
    return results, run, tables


def test_a_run_with_eicar_is_quarantined_named_and_tagged(prefect_api, layout, client, owners):
    stage(layout, "partner-a/eicar.com", EICAR)
    clean = stage(layout, "partner-a/report.csv", b"a,b\n1,2\n")
    results, run, tables = asyncio.run(run_and_read(
        ScanRuns(scanner_for(layout, client, owners)),
        [layout.staging / "partner-a/eicar.com", clean]))
    assert {r.verdict for r in results} == {VerdictKind.CLEAN, VerdictKind.INFECTED}
    assert run.state is not None
    assert run.state.type.value == "COMPLETED"
    assert run.state.name == "Quarantined"
    assert run.state.message == "1 infected, 1 clean"
    assert run.name == "scan partner-a/eicar.com infected, 1 clean"
    assert set(run.tags) == {f"instance:{INSTANCE}", f"worker:{WORKER}", "account:partner-a",
                             "infected"}
    assert {result.worker for result in results} == {WORKER}
    narrow = {row["file"]: row for row in tables[SUMMARY_TABLE_KEY]}
    full = {row["file"]: row for row in tables[VERDICT_TABLE_KEY]}
    digest = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert narrow["partner-a/report.csv"]["sha256"] == digest[:12]
    assert narrow["partner-a/eicar.com"]["account"] == "partner-a"
    assert full["partner-a/report.csv"]["sha256"] == digest
    assert full["partner-a/eicar.com"]["account"] == "partner-a"
    # What is in quarantine now, under the instance's own key (the Artifacts page shows it).
    in_quarantine = tables[artifact_key("quarantine", INSTANCE)]
    eicar = next(result for result in results if result.verdict is VerdictKind.INFECTED)
    assert [(row["file"], row["signature"]) for row in in_quarantine] == [
        ("quarantine/partner-a/eicar.com", eicar.signature)]


def test_an_all_clean_run_stays_completed(prefect_api, layout, client, owners):
    pulled = stage(layout, "pulled/in.txt", b"pulled\n")
    _, run, _ = asyncio.run(run_and_read(ScanRuns(scanner_for(layout, client, owners)),
                                         [pulled]))
    assert run.state is not None and run.state.name == "Completed"
    assert run.name == "scan 1 clean from downloader:pull-x"
    assert set(run.tags) == {f"instance:{INSTANCE}", f"worker:{WORKER}", "downloader:pull-x"}


def test_a_run_with_clamd_unreachable_is_retrying(prefect_api, layout, owners, tmp_path):
    nobody = ClamdClient(ClamdAddress.parse(str(tmp_path / "nothing-here.sock")), timeout=5)
    staged = stage(layout, "partner-b/wait.txt", b"waits for clamd\n")
    results, run, _ = asyncio.run(run_and_read(ScanRuns(scanner_for(layout, nobody, owners)),
                                               [staged]))
    assert [r.area for r in results] == [Area.STAGING]
    assert staged.is_file()
    assert run.state is not None
    assert run.state.type.value == "COMPLETED"
    assert run.state.name == "Retrying"
    assert run.state.message == "1 waiting"
    assert run.name == "scan 1 waiting of 1 from partner-b"
    assert set(run.tags) == {f"instance:{INSTANCE}", f"worker:{WORKER}", "account:partner-b",
                             "waiting"}


def test_a_runs_parameters_name_files_by_data_root_path_never_by_host_path(
        prefect_api, layout, client, owners):
    """Prefect UI users saw host paths (``/srv/.../data/staging/...``) in the runs'
    parameters; every other surface names files as in the data root. A name that is not UTF-8
    travels hex-encoded."""
    report = stage(layout, "partner-a/report.csv", b"a,b\n")
    latin = Path(os.fsdecode(os.fsencode(layout.staging) + b"/partner-b/caf\xe9.txt"))
    latin.parent.mkdir(parents=True)
    latin.write_bytes(b"latin-1 name\n")
    results, run, _ = asyncio.run(run_and_read(ScanRuns(scanner_for(layout, client, owners)),
                                               [report, latin]))
    assert [r.area for r in results] == [Area.CLEAN, Area.CLEAN]
    assert run.parameters["paths"] == ["staging/partner-a/report.csv",
                                       "hex:" + b"staging/partner-b/caf\xe9.txt".hex()]
    text = json.dumps(run.parameters)
    assert str(layout.root) not in text and '"/' not in text


def test_a_batch_whose_names_pass_prefects_parameter_limit_is_scanned_whole(
        prefect_api, layout, client, owners):
    """A batch whose paths passed Prefect's 512 KiB parameter limit was refused (422) and
    retried for ever, and another partner's file in it was never scanned: 1000 files with ~1 KB
    names in deep directories, and that other file last. All are scanned."""
    deep = layout.staging / "partner-a" / Path(*["d" * 240] * 4)
    deep.mkdir(parents=True)
    long_named = [deep / f"f{number:04}.txt" for number in range(1000)]
    for path in long_named:
        path.write_bytes(b"deep\n")
    other = stage(layout, "partner-b/other.txt", b"another partner's file\n")
    results = asyncio.run(ScanRuns(scanner_for(layout, client, owners)).scan_batch(
        [*long_named, other]))
    assert len(results) == 1001 and {r.area for r in results} == {Area.CLEAN}
    assert (layout.clean / "partner-b" / "other.txt").read_bytes() == b"another partner's file\n"
    assert sum(1 for path in layout.clean.rglob("*") if path.is_file()) == 1001


def test_the_warm_up_registers_the_scan_flow_before_the_first_run(prefect_api, layout, client,
                                                                  owners):
    """What the first upload after a start waited for on its way to clean/ (measured with
    ssftp up: 0.75-1.1 s for the first upload, ~0.2 s for the next ones)."""
    async def warm_and_read() -> str:
        await ScanRuns(scanner_for(layout, client, owners)).warm_up()
        async with get_client() as api:
            return (await api.read_flow_by_name("scan")).name
    assert asyncio.run(warm_and_read()) == "scan"


def test_a_warm_up_that_cannot_reach_prefect_is_only_logged(layout, client, owners, caplog):
    """A head start only: the worker starts, and its first run reports the server."""
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        asyncio.run(ScanRuns(scanner_for(layout, client, owners)).warm_up())
    assert [record for record in caplog.records
            if "scan flow not registered ahead of the first run" in record.getMessage()]


class HoldsOneFile(Scanner):
    """A real scanner that holds one file until the test has stopped the run: the moment of a
    Ctrl-C, mid-batch, cannot be hit for real otherwise."""

    def __init__(self, *args: Any, hold: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold = hold
        self.reached = threading.Event()
        self.release = threading.Event()

    def scan(self, path: Path, flow_run_id: str | None = None) -> ScanResult | None:
        if path.name == self.hold:
            self.reached.set()
            self.release.wait(60)
        return super().scan(path, flow_run_id)


@pytest.mark.parametrize("how", ["asked", "cancelled"])
def test_a_stop_mid_batch_ends_the_run_interrupted_with_what_it_did(prefect_api, layout,
                                                                   client, owners, how):
    """Ctrl-C during a scan: the file in hand is finished, the rest stays in staging, and the
    run says so (it was Crashed, nameless, untagged and without tables). A stop asks the runs
    first (``ScanRuns.stop``); one still going when its time is up is cancelled."""
    names = ["a-eicar.com", "b.txt", "c.txt", "d.txt", "e.txt"]
    paths = [stage(layout, f"partner-a/{name}", EICAR if name.endswith(".com") else b"ok\n")
             for name in names]
    instance = f"{INSTANCE}-{how}"
    scanner = HoldsOneFile(layout, client, owners=owners, instance=instance,
                           claims=Claims(layout.staging), hold="c.txt", worker=f"held-{how}")

    async def stop_at_the_third_file() -> None:
        # The large files' lane scans one file at a time, in the batch's order.
        runs = ScanRuns(scanner)
        run = asyncio.create_task(runs.scan_batch(paths, Lane.LARGE))
        await asyncio.to_thread(scanner.reached.wait, 60)
        # Tagged with its worker from the start: a run under way is found by it in the UI.
        async with get_client() as prefect:
            [running] = await prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"worker:held-{how}"])))
        assert running.state is not None and running.state.type.value == "RUNNING"
        if how == "asked":
            runs.stop()
        else:
            run.cancel()
            for _ in range(10):  # the run sees the cancellation before the held file ends
                await asyncio.sleep(0)
        scanner.release.set()
        if how == "asked":
            assert await run == []  # the interrupted run's files are the next start's
        else:
            with pytest.raises(asyncio.CancelledError):
                await run

    asyncio.run(stop_at_the_third_file())
    assert [path.name for path in files_under(layout.staging)] == ["d.txt", "e.txt"]
    assert sorted(path.name for path in files_under(layout.clean)) == ["b.txt", "c.txt"]
    run, tables = asyncio.run(interrupted_run(instance))
    assert run.state is not None
    assert run.state.type.value == "CANCELLED"
    assert run.state.name == "Interrupted"
    assert run.state.message == ("interrupted by a stop after 3 of 5: 1 infected, 2 clean; "
                                 "2 left in staging")
    assert run.name == "scan partner-a/a-eicar.com infected, 2 clean"
    assert set(run.tags) == {f"instance:{instance}", f"worker:held-{how}", "account:partner-a",
                             "infected", "interrupted"}
    assert sorted(row["file"] for row in tables[SUMMARY_TABLE_KEY]) == [
        "partner-a/a-eicar.com", "partner-a/b.txt", "partner-a/c.txt"]
    assert [row["file"] for row in tables[artifact_key("quarantine", instance)]] == [
        "quarantine/partner-a/a-eicar.com"]


async def interrupted_run(instance: str) -> tuple[FlowRun, dict[str, list[dict[str, Any]]]]:
    """The one scan run of ``instance`` a stop cut short (the harness is shared by the
    session), and its tables."""
    async with get_client() as client:
        [run] = [run for run in await client.read_flow_runs()
                 if run.state is not None and run.state.name == "Interrupted"
                 and f"instance:{instance}" in run.tags]
        artifacts = await client.read_artifacts()
    tables = {artifact.key: json.loads(str(artifact.data)) for artifact in artifacts
              if artifact.key is not None and artifact.flow_run_id == run.id}
    return run, tables


# --- the clamd's budget: a Prefect global concurrency limit shared by every worker ---------

# The threads of the clamd the tests start (ssftp/clamav/clamd.conf: MaxThreads 4).
CLAMD_THREADS = 4


async def read_limit(name: str) -> GlobalConcurrencyLimitResponse:
    async with get_client() as api:
        return await api.read_global_concurrency_limit_by_name(name)


def test_a_scan_holds_a_slot_of_the_clamds_budget_while_it_scans(prefect_api, layout,
                                                                  client, owners):
    """The limit is there from the worker's start, with the clamd's own threads as its slots
    (asked with STATS); a slice being scanned holds one slot, and gives it back."""
    name = limit_name([client.address])
    staged = stage(layout, "partner-a/held.txt", b"held while the test reads the limit\n")
    scanner = HoldsOneFile(layout, client, owners=owners, instance=INSTANCE,
                           claims=Claims(layout.staging), hold="held.txt",
                           worker="budget-held")

    async def hold_and_read() -> tuple[GlobalConcurrencyLimitResponse, ...]:
        runs = ScanRuns(scanner)
        await runs.warm_up()
        before = await read_limit(name)
        run = asyncio.create_task(runs.scan_batch([staged]))
        await asyncio.to_thread(scanner.reached.wait, 60)
        during = await read_limit(name)
        scanner.release.set()
        await run
        return before, during, await read_limit(name)

    before, during, after = asyncio.run(hold_and_read())
    assert (before.limit, before.active_slots) == (CLAMD_THREADS, 0)
    assert during.active_slots == 1
    assert after.active_slots == 0
    assert [path.name for path in files_under(layout.clean)] == ["held.txt"]


async def run_logs(worker: str) -> list[str]:
    """The log lines of the scan run tagged with ``worker``, as the UI shows them."""
    async with get_client() as api:
        runs = await api.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"worker:{worker}"])))
        if not runs:
            return []
        logs = await api.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[run.id for run in runs])))
    return [log.message for log in logs]


async def says(worker: str, start: str) -> list[str] | None:
    """The run's log lines once one of them starts with ``start``."""
    lines = await run_logs(worker)
    return lines if any(line.startswith(start) for line in lines) else None


@pytest.mark.parametrize("then", ["freed", "stopped"])
def test_a_scan_waits_while_other_workers_hold_the_clamds_slots(prefect_api, layout, client,
                                                                owners, then):
    """Four scans of other workers hold every slot: the run scans nothing, says in its log
    that it waits, and scans once a slot is free; a stop meanwhile ends it with the file left
    in staging for the next start."""
    name = limit_name([client.address])
    staged = stage(layout, "partner-a/waits.txt", b"waits for a slot\n")
    worker = f"budget-{then}"
    scanner = Scanner(layout, client, owners=owners, instance=INSTANCE,
                      claims=Claims(layout.staging), worker=worker)

    async def wait_while_taken() -> list[ScanResult]:
        runs = ScanRuns(scanner)
        await runs.warm_up()
        async with concurrency(name, occupy=CLAMD_THREADS, strict=True):
            run = asyncio.create_task(runs.scan_batch([staged]))
            waiting = f"waiting for a clamd slot: {CLAMD_THREADS} of {CLAMD_THREADS} in use"
            await wait_for_async("the run to say it waits for a clamd slot",
                                 lambda: says(worker, waiting), interval=0.2)
            assert staged.is_file() and not files_under(layout.clean)
            if then == "stopped":
                runs.stop()
                return await run
        return await run

    results = asyncio.run(wait_while_taken())
    if then == "stopped":
        assert results == []
        assert staged.is_file() and not files_under(layout.clean)
    else:
        assert [result.area for result in results] == [Area.CLEAN]
        assert [path.name for path in files_under(layout.clean)] == ["waits.txt"]
    assert asyncio.run(read_limit(name)).active_slots == 0
