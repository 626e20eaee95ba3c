"""A command's notifications sent at once: delivered ones are settled in the outbox, the
others stay owed for a worker, and each attempt has its audit record."""

from __future__ import annotations

import asyncio

from ssftp.notify.direct import send_now
from ssftp.notify.outbox import Outbox
from ssftp.notify.webhooks import Notification
from tests.support.logs import json_lines
from tests.support.scanning import scan_result
from tests.support.webhooks import hook


def test_a_delivered_notification_is_settled_and_one_refused_stays_owed(layout, receiver,
                                                                       audit_log):
    outbox = Outbox(layout.outbox)
    taken = Notification.build(hook("released", f"{receiver.url}/ok"), "released",
                               scan_result("clean"), "gw-1", {"reason": "r"})
    refused = Notification.build(hook("released", f"{receiver.url}/dead"), "released",
                                 scan_result("clean"), "gw-1")
    outbox.add(item.stored() for item in (taken, refused))

    left = asyncio.run(send_now(outbox, [taken, refused]))

    assert len(left) == 1 and "stays owed" in left[0]
    assert outbox.owed(now=float("inf"), limit=10) == [refused.id]
    [received] = receiver.received("/ok", "eicar.com")
    assert received.json()["reason"] == "r"
    assert [(r["event"], r["delivered"]) for r in json_lines(audit_log)] == [
        ("webhook", True), ("webhook", False)]
    outbox.close()
