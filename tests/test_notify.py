"""The notify flow on a real Prefect server and a real HTTP receiver: it delivers what the
outbox owes, marks each outcome there, passes ids (never payloads) as run parameters, and
keeps a failed notification owed for later."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.notify import IDS_PER_RUN, NotifyRuns, redelivery_delay
from ssftp.config.schema import Webhook
from ssftp.outbox import Outbox, StoredNotification
from ssftp.webhooks import EVENT_ID_HEADER
from tests.support import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def stored(url: str, file: str, body: dict[str, object] | None = None,
           event: str = "virusFound") -> StoredNotification:
    event_id = str(uuid.uuid4())
    content = {"eventId": event_id, "filePath": file, **(body or {})}
    return StoredNotification(event_id, event, url, file, json.dumps(content).encode())


def hook(url: str, event: str = "virusFound") -> Webhook:
    return Webhook.model_validate({"name": event, "url": url, "retries": 1,
                                   "retryDelaySeconds": 0})


async def notify_runs() -> list[dict[str, object]]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs()
    return [run.parameters for run in runs if run.name.startswith("notify")]


def test_owed_notifications_are_delivered_and_settled(prefect_api: str, tmp_path: Path,
                                                      receiver: WebhookReceiver) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    good, dead, gone = (f"{receiver.url}/{name}" for name in ("good", "dead", "gone"))
    items = [stored(good, "acme/a.exe"), stored(dead, "acme/b.exe"), stored(gone, "acme/c.exe")]
    outbox.add(items)
    runs = NotifyRuns(outbox, lambda: [hook(good), hook(dead)])

    asyncio.run(runs.send_owed())

    [delivered] = receiver.received("/good", "acme/a.exe")
    assert delivered.body == items[0].body
    assert delivered.headers[EVENT_ID_HEADER] == items[0].id
    assert len(receiver.received("/dead", "acme/b.exe")) == 2  # the POST and its one retry
    assert not receiver.received("/gone", "acme/c.exe")  # its webhook is no longer configured
    # Only the failed one is still owed, and not before its redelivery delay.
    assert [item.id for item in outbox.pending([item.id for item in items])] == [items[1].id]
    assert outbox.owed(now=time.time(), limit=10) == []
    assert outbox.owed(now=time.time() + redelivery_delay(1) + 1, limit=10) == [items[1].id]


def test_a_crash_leaves_it_owed_and_the_next_process_sends_it(prefect_api: str, tmp_path: Path,
                                                              receiver: WebhookReceiver) -> None:
    """What a dead process stored and never sent is sent by the next one, with its id."""
    url = f"{receiver.url}/hook"
    item = stored(url, "acme/owed.exe")
    Outbox(tmp_path / "outbox.sqlite3").add([item])  # and then the process "died"

    asyncio.run(NotifyRuns(Outbox(tmp_path / "outbox.sqlite3"), lambda: [hook(url)]).send_owed())

    [request] = receiver.received("/hook", "acme/owed.exe")
    assert json.loads(request.body)["eventId"] == item.id


def test_a_large_backlog_goes_in_runs_of_ids_only(prefect_api: str, tmp_path: Path,
                                                  receiver: WebhookReceiver) -> None:
    """Payloads stay out of run parameters: on the main this replaces, a batch of 800
    quarantined files with long names made one notify run whose parameters Prefect refused
    (HTTP 422, over 512 KiB), and none of its webhooks were sent."""
    url = f"{receiver.url}/many"
    marker = uuid.uuid4().hex
    items = [stored(url, f"acme/{marker}/{n:04d}-{'x' * 200}.exe",
                    {"scanMessage": "y" * 700}) for n in range(2 * IDS_PER_RUN + 5)]
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add(items)

    asyncio.run(NotifyRuns(outbox, lambda: [hook(url)]).send_owed())

    sent = {json.loads(r.body)["eventId"] for r in receiver.requests if r.path == "/many"}
    assert sent == {item.id for item in items}
    ours = [params for params in asyncio.run(notify_runs())
            if set(params.get("ids", [])) <= sent and params.get("ids")]
    assert sorted(len(params["ids"]) for params in ours) == [5, IDS_PER_RUN, IDS_PER_RUN]
    assert all(set(params) == {"ids"} for params in ours)


def test_redelivery_waits_longer_each_time_up_to_an_hour() -> None:
    delays = [redelivery_delay(attempts) for attempts in range(1, 12)]
    assert delays[0] == 60
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == 3600
