"""Scan runs an operator can read in the Prefect UI: final state names and messages, run names,
tags and the narrow verdict table. The wording is plain functions tested directly; a few runs
through the real Prefect test harness and a real clamd read it all back through the API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from flows.scan import (
    SUMMARY_TABLE_KEY,
    VERDICT_TABLE_KEY,
    RunSummary,
    ScanRuns,
    summary_row,
    verdict_row,
)
from ssftp.addresses import ClamdAddress
from ssftp.config.schema import Webhook
from ssftp.layout import DataLayout
from ssftp.notify.webhooks import Notification
from ssftp.scan.claims import Claims
from ssftp.scan.clamd import ClamdClient, VerdictKind
from ssftp.scan.owners import StagingOwners
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.scanner import Scanner
from tests.test_scan_core import EICAR, stage

INSTANCE = "runs-test"


def result(account: str | None, verdict: VerdictKind, area: Area,
           sha256: str = "ab" * 32) -> ScanResult:
    return ScanResult(file=f"{account}/f.dat", account=account, size=3, sha256=sha256,
                      verdict=verdict, signature=None, detail="d", source="staging/x",
                      destination=f"{area}/x", area=area, time="t", flow_run_id=None)


CLEAN = (VerdictKind.CLEAN, Area.CLEAN)
INFECTED = (VerdictKind.INFECTED, Area.QUARANTINE)
UNSCANNABLE = (VerdictKind.UNSCANNABLE, Area.QUARANTINE)
WAITING = (VerdictKind.ERROR, Area.STAGING)


def summary(*rows: tuple[str | None, tuple[VerdictKind, Area]]) -> RunSummary:
    return RunSummary.of(result(account, *kind) for account, kind in rows)


# --- the wording, directly --------------------------------------------------------------------


def test_an_all_clean_run_is_completed_and_named_by_its_count_and_account():
    clean = summary(*[("acme", CLEAN)] * 3)
    assert clean.state_name() == "Completed"
    assert clean.message() == "3 clean, 0 infected, 0 unscannable, 0 waiting"
    assert clean.run_name() == "scan 3 clean from acme"
    assert clean.tags(INSTANCE) == [f"instance:{INSTANCE}", "account:acme"]


def test_a_run_that_quarantined_is_named_by_what_it_quarantined_first():
    found = summary(*[("acme", CLEAN)] * 48, ("acme", INFECTED), ("acme", INFECTED))
    assert found.state_name() == "Quarantined"
    assert found.message() == "48 clean, 2 infected, 0 unscannable, 0 waiting"
    assert found.run_name() == "scan 2 infected of 50 from acme"
    assert found.tags(INSTANCE) == [f"instance:{INSTANCE}", "account:acme", "infected"]


def test_quarantine_wins_over_waiting_and_both_show_in_name_and_tags():
    mixed = summary(("a", UNSCANNABLE), ("b", WAITING), ("c", CLEAN))
    assert mixed.state_name() == "Quarantined"
    assert mixed.run_name() == "scan 1 unscannable, 1 waiting of 3 from a, b and 1 more"
    assert mixed.tags(INSTANCE)[-2:] == ["unscannable", "waiting"]


def test_a_run_that_left_files_waiting_is_retrying():
    waiting = summary(("acme", WAITING), ("acme", CLEAN))
    assert waiting.state_name() == "Retrying"
    assert waiting.message() == "1 clean, 0 infected, 0 unscannable, 1 waiting"
    assert waiting.run_name() == "scan 1 waiting of 2 from acme"
    assert "waiting" in waiting.tags(INSTANCE)


def test_a_downloader_is_tagged_by_its_own_name_and_an_unowned_file_by_none():
    pulled = summary(("downloader:pull-x", CLEAN), (None, CLEAN))
    assert pulled.tags(INSTANCE) == [f"instance:{INSTANCE}", "downloader:pull-x"]
    assert pulled.run_name() == "scan 2 clean from downloader:pull-x"
    assert summary(*[(None, CLEAN)]).run_name() == "scan 1 clean"
    assert summary().run_name() == "scan nothing"


def test_the_final_state_is_completed_type_and_carries_the_results():
    results = [result("acme", *WAITING)]
    state = RunSummary.of(results).final_state(results)
    assert state.is_completed() and state.name == "Retrying"
    assert state.message == "0 clean, 0 infected, 0 unscannable, 1 waiting"
    assert state.data == results


def test_the_summary_row_leads_with_the_account_and_shortens_the_hash():
    row = summary_row(result("acme", *INFECTED, sha256="0123456789abcdef" * 4))
    assert list(row)[:2] == ["account", "file"]
    assert row["sha256"] == "0123456789ab"
    assert summary_row(result("acme", *WAITING, sha256=None))["sha256"] == ""



def test_names_in_run_tables_and_notifications_are_one_line_without_terminal_escapes():
    """A partner's name with ESC, BEL, a newline or a byte that is not UTF-8 reached the
    Prefect UI's tables, run logs and webhook run names with its control characters raw (a
    newline split a table row; on 5b67aed ``printable`` kept them)."""
    hostile = replace(result("acme", *INFECTED), file=os.fsdecode(b"acme/x\x1b]0;PWNED\x07\ny\xe9"))
    shown = "acme/x\\x1b]0;PWNED\\x07\\ny\\xe9"
    assert summary_row(hostile)["file"] == verdict_row(hostile)["file"] == shown
    hook = Webhook.model_validate({"name": "virusFound", "url": "http://127.0.0.1:9/"})
    assert Notification.build(hook, "virusFound", hostile, INSTANCE).file == shown

# --- real runs: the Prefect harness and a real clamd ----------------------------------------



def scanner_for(layout: DataLayout, client: ClamdClient, owners: StagingOwners) -> Scanner:
    return Scanner(layout, client, owners=owners, instance=INSTANCE,
                   claims=Claims(layout.staging))


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
    assert run.state.message == "1 clean, 1 infected, 0 unscannable, 0 waiting"
    assert run.name == "scan 1 infected of 2 from partner-a"
    assert set(run.tags) == {f"instance:{INSTANCE}", "account:partner-a", "infected"}
    narrow = {row["file"]: row for row in tables[SUMMARY_TABLE_KEY]}
    full = {row["file"]: row for row in tables[VERDICT_TABLE_KEY]}
    digest = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert narrow["partner-a/report.csv"]["sha256"] == digest[:12]
    assert narrow["partner-a/eicar.com"]["account"] == "partner-a"
    assert full["partner-a/report.csv"]["sha256"] == digest
    assert full["partner-a/eicar.com"]["account"] == "partner-a"


def test_an_all_clean_run_stays_completed(prefect_api, layout, client, owners):
    pulled = stage(layout, "pulled/in.txt", b"pulled\n")
    _, run, _ = asyncio.run(run_and_read(ScanRuns(scanner_for(layout, client, owners)),
                                         [pulled]))
    assert run.state is not None and run.state.name == "Completed"
    assert run.name == "scan 1 clean from downloader:pull-x"
    assert set(run.tags) == {f"instance:{INSTANCE}", "downloader:pull-x"}


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
    assert run.state.message == "0 clean, 0 infected, 0 unscannable, 1 waiting"
    assert run.name == "scan 1 waiting of 1 from partner-b"
    assert set(run.tags) == {f"instance:{INSTANCE}", "account:partner-b", "waiting"}


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
