"""flows.rescan as plain functions: what a rescan run's state, name and tags say."""

from __future__ import annotations

from flows.rescan import RescanSummary
from ssftp.scan.results import Area
from tests.support.scanning import scan_result


def looked(verdict: str, area: Area, *, moved: bool = False, account: str = "acme"):
    source = f"{'clean' if moved else area.value}/{account}/x"
    destination = f"{area.value}/{account}/x"
    return scan_result(verdict, reason="rescan", area=area, account=account, source=source,
                       destination=destination)


def test_a_rescan_that_moved_a_file_is_quarantined_and_says_whose():
    summary = RescanSummary.of([looked("infected", Area.QUARANTINE, moved=True),
                                looked("clean", Area.CLEAN, account="other"),
                                looked("error", Area.CLEAN)])
    assert summary.state_name() == "Quarantined"
    assert summary.message() == "3 looked at, 1 infected and quarantined, 1 not scanned"
    assert summary.run_name("ClamAV 1.4.6/27481") == (
        "rescan 1 infected of 3 from acme for ClamAV 1.4.6/27481")
    assert summary.tags("gw") == ["instance:gw", "rescan", "account:acme", "infected"]


def test_a_rescan_that_could_not_look_at_everything_is_incomplete():
    summary = RescanSummary.of([looked("clean", Area.CLEAN), looked("unscannable", Area.CLEAN)])
    assert (summary.state_name(), summary.unscanned) == ("Incomplete", 1)
    assert summary.run_name("ClamAV 1.4.6/+0a") == "rescan 2 files for ClamAV 1.4.6/+0a"
    assert RescanSummary.of([looked("clean", Area.CLEAN)]).state_name() == "Completed"


def test_a_rescan_of_quarantine_counts_what_is_still_and_no_longer_detected():
    summary = RescanSummary.of([looked("infected", Area.QUARANTINE),
                                looked("clean", Area.QUARANTINE)])
    assert (summary.moved, summary.detected, summary.released) == (0, 1, 1)
    assert summary.state_name() == "Completed"
    assert "1 still detected in quarantine, 1 no longer detected" in summary.message()
