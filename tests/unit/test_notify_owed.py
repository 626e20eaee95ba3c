"""ssftp.notify.owed: the one rule of what an outcome owes, the webhook and the Prefect event,
from its verdict and the file's earlier failures."""

from __future__ import annotations

import pytest

from ssftp.notify.owed import owed
from tests.support.scanning import scan_result
from tests.support.webhooks import hook, with_webhooks


@pytest.mark.parametrize(
    ("verdict", "failures", "webhook", "event"),
    [
        ("infected", 0, "virusFound", "ssftp.file.infected"),
        ("infected", 2, "virusFound", "ssftp.file.infected"),
        ("unscannable", 0, "scanError", "ssftp.file.unscannable"),
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
