"""flows.scan's wording, as plain functions: final state names and messages, run names, tags and
the narrow verdict table an operator reads in the Prefect UI. Real runs read back through the
API are in tests/integration/test_flows_scan.py."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest
from prefect.states import Completed

from flows.scan import (
    RunSummary,
    results_of,
    summary_row,
    verdict_row,
)
from ssftp.config.schema import Webhook
from ssftp.errors import RunResultsLostError
from ssftp.notify.webhooks import Notification
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.verdict import VerdictKind

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
    assert clean.message() == "3 clean"
    assert clean.run_name() == "scan 3 clean from acme"
    assert clean.tags(INSTANCE) == [f"instance:{INSTANCE}", "account:acme"]


def test_a_run_that_quarantined_is_named_by_what_it_quarantined_first():
    """The worst first in the message (the runs list shows it beside the state), and a few
    quarantined files by name (before: "48 clean, 2 infected, ..."; "scan 2 infected of 50")."""
    found = summary(*[("acme", CLEAN)] * 48, ("acme", INFECTED), ("acme", INFECTED))
    assert found.state_name() == "Quarantined"
    assert found.message() == "2 infected, 48 clean"
    assert found.run_name() == "scan acme/f.dat infected, acme/f.dat infected, 48 clean"
    assert found.tags(INSTANCE) == [f"instance:{INSTANCE}", "account:acme", "infected"]
    many = summary(*[("acme", CLEAN)] * 2, *[("acme", INFECTED)] * 3)
    assert many.run_name() == "scan 3 infected of 5 from acme"  # counted beyond two


def test_a_long_name_in_a_run_name_keeps_its_end():
    long = replace(result("acme", *INFECTED), file="acme/" + "d/" * 40 + "eicar.com")
    name = RunSummary.of([long]).run_name()
    assert name.startswith("scan ...") and name.endswith("d/eicar.com infected")
    assert len(name) < 90


def test_quarantine_wins_over_waiting_and_both_show_in_name_and_tags():
    mixed = summary(("a", UNSCANNABLE), ("b", WAITING), ("c", CLEAN))
    assert mixed.state_name() == "Quarantined"
    assert mixed.run_name() == "scan a/f.dat unscannable, 1 waiting, 1 clean"
    assert mixed.message() == "1 unscannable, 1 waiting, 1 clean"
    assert mixed.tags(INSTANCE)[-2:] == ["unscannable", "waiting"]


def test_a_run_that_left_files_waiting_is_retrying():
    waiting = summary(("acme", WAITING), ("acme", CLEAN))
    assert waiting.state_name() == "Retrying"
    assert waiting.message() == "1 waiting, 1 clean"
    assert waiting.run_name() == "scan 1 waiting of 2 from acme"
    assert "waiting" in waiting.tags(INSTANCE)


def test_a_downloader_is_tagged_by_its_own_name_and_an_unowned_file_by_none():
    pulled = summary(("downloader:pull-x", CLEAN), (None, CLEAN))
    assert pulled.tags(INSTANCE) == [f"instance:{INSTANCE}", "downloader:pull-x"]
    assert pulled.run_name() == "scan 2 clean from downloader:pull-x"
    assert summary(*[(None, CLEAN)]).run_name() == "scan 1 clean"
    assert summary().run_name() == "scan nothing"
    assert summary().message() == "nothing scanned"


def test_the_final_state_is_completed_type_and_carries_the_results():
    results = [result("acme", *WAITING)]
    state = RunSummary.of(results).final_state(results)
    assert state.is_completed() and state.name == "Retrying"
    assert state.message == "1 waiting"
    assert asyncio.run(results_of(state)) == results


def test_a_run_whose_results_are_lost_says_so_rather_than_that_it_failed():
    """A state read back without its data (Prefect's MissingResult, as after its server
    stalled): the run did its work, and the watcher must not call it a failed scan."""
    with pytest.raises(RunResultsLostError, match="ended COMPLETED cannot be read back"):
        asyncio.run(results_of(Completed()))


def test_the_summary_row_leads_with_the_account_and_shortens_the_hash():
    row = summary_row(result("acme", *INFECTED, sha256="0123456789abcdef" * 4))
    assert list(row)[:2] == ["account", "file"]
    assert row["sha256"] == "0123456789ab"
    assert summary_row(result("acme", *WAITING, sha256=None))["sha256"] == ""


def test_a_file_passed_without_inspection_says_so_in_both_tables_and_blocked_files_count():
    uninspected = replace(result("acme", *CLEAN), inspected=False)
    assert summary_row(uninspected)["verdict"] == "clean (encrypted, not inspected)"
    assert verdict_row(uninspected)["verdict"] == "clean (encrypted, not inspected)"
    assert summary_row(result("acme", *CLEAN))["verdict"] == "clean"
    blocked = summary(("acme", (VerdictKind.BLOCKED, Area.QUARANTINE)), ("acme", CLEAN))
    assert blocked.state_name() == "Quarantined"
    assert blocked.run_name() == "scan acme/f.dat blocked, 1 clean"
    assert "blocked" in blocked.tags(INSTANCE)



def test_names_in_run_tables_and_notifications_are_one_line_without_terminal_escapes():
    """A partner's name with ESC, BEL, a newline or a byte that is not UTF-8 reached the
    Prefect UI's tables, run logs and webhook run names with its control characters raw (a
    newline split a table row; on 5b67aed ``printable`` kept them)."""
    hostile = replace(result("acme", *INFECTED), file=os.fsdecode(b"acme/x\x1b]0;PWNED\x07\ny\xe9"))
    shown = "acme/x\\x1b]0;PWNED\\x07\\ny\\xe9"
    assert summary_row(hostile)["file"] == verdict_row(hostile)["file"] == shown
    hook = Webhook.model_validate({"name": "virusFound", "url": "http://127.0.0.1:9/"})
    assert Notification.build(hook, "virusFound", hostile, INSTANCE).file == shown
