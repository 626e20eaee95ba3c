"""ssftp.notify.owed: the one rule of what an outcome owes, the webhook and the Prefect event,
from its verdict and the file's earlier failures."""

from __future__ import annotations

import json

import pytest

from ssftp.notify.owed import Owed, owed
from ssftp.scan.results import Area
from tests.support.scanning import scan_result
from tests.support.webhooks import hook, with_webhooks


@pytest.mark.parametrize(
    ("verdict", "failures", "webhook", "event"),
    [
        ("infected", 0, "virusFound", "ssftp.file.infected"),
        ("infected", 2, "virusFound", "ssftp.file.infected"),
        ("unscannable", 0, "scanError", "ssftp.file.unscannable"),
        ("blocked", 0, "virusFound", "ssftp.file.blocked"),
        ("error", 0, "scanError", "ssftp.file.waiting"),
        ("error", 1, None, None),
        ("clean", 0, None, "ssftp.file.clean"),
        ("unscanned", 0, None, "ssftp.file.clean"),
    ],
)
def test_what_an_outcome_owes(verdict, failures, webhook, event):
    config = with_webhooks(hook("virusFound"), hook("scanError"))
    due = owed(scan_result(verdict), failures, config)
    assert [n.event for n in due.notifications] == ([webhook] if webhook else [])
    assert due.event == event


def test_a_rescan_detection_owes_what_a_fresh_one_does_and_a_look_in_place_owes_nothing():
    """A handed-on file found infected by a rescan: virusFound (its payload says why) and the
    infected event; a file the rescan leaves where it is (still clean, or not scannable this
    time): only its audit record."""
    config = with_webhooks(hook("virusFound"), hook("scanError"))
    moved = scan_result("infected", reason="rescan", source="clean/partner-a/eicar.com")
    due = owed(moved, 0, config)
    assert ([n.event for n in due.notifications], due.event) == (["virusFound"],
                                                                 "ssftp.file.infected")
    assert json.loads(due.notifications[0].body)["reason"] == "rescan"
    for verdict in ("clean", "error", "unscannable"):
        stays = scan_result(verdict, reason="rescan", source="clean/partner-a/eicar.com",
                            destination="clean/partner-a/eicar.com", area=Area.CLEAN)
        assert owed(stays, 0, config) == Owed([], None)
