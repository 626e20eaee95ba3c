"""The notify flow on a real Prefect server and a real HTTP receiver: it delivers what the
outbox owes, marks each outcome there, passes ids (never payloads) as run parameters, keeps a
failed notification owed for later, gives each attempt one deadline for the whole POST, and
spends one task run per cycle on a dead receiver, however much it is owed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from flows import notify
from flows.notify import IDS_PER_RUN, NotifyRuns, redelivery_delay
from ssftp.config.schema import Webhook
from ssftp.notify.outbox import Outbox, StoredNotification
from ssftp.notify.webhooks import EVENT_ID_HEADER
from tests.support.waiting import wait_for
from tests.support.webhooks import ReceivedRequest, WebhookReceiver


def stored(url: str, file: str, body: dict[str, object] | None = None,
           event: str = "virusFound") -> StoredNotification:
    event_id = str(uuid.uuid4())
    content = {"eventId": event_id, "filePath": file, **(body or {})}
    return StoredNotification(event_id, event, url, file, json.dumps(content).encode())


def hook(url: str, event: str = "virusFound", **settings: object) -> Webhook:
    return Webhook.model_validate({"name": event, "url": url, "retries": 1,
                                   "retryDelaySeconds": 0, **settings})


async def notify_runs() -> list[dict[str, object]]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs()
    return [run.parameters for run in runs if run.name.startswith("notify")]


async def task_runs_of(ids: set[str]) -> list[list[str]]:
    """The names of the task runs of each notify run (oldest first) sent some of ``ids``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        runs = [run for run in await client.read_flow_runs(sort=FlowRunSort.START_TIME_ASC)
                if run.name.startswith("notify") and set(run.parameters.get("ids", [])) & ids]
        return [sorted(task.name for task in await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))))
                for run in runs]


def event_ids(requests: list[ReceivedRequest], path: str) -> list[str]:
    return [request.headers[EVENT_ID_HEADER] for request in list(requests)
            if request.path == path]


@pytest.fixture
def quick_redelivery(monkeypatch: pytest.MonkeyPatch) -> float:
    """Redeliveries due after a second, not a minute: a test sees a few cycles."""
    monkeypatch.setattr(notify, "REDELIVERY_SECONDS", 1.0)
    return redelivery_delay(1)


def next_cycle(outbox: Outbox) -> None:
    wait_for("the next redelivery", lambda: outbox.owed(now=time.time(), limit=1), timeout=30)


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


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_trickling_receiver_is_timed_out_and_retried(prefect_api: str, tmp_path: Path,
                                                       receiver: WebhookReceiver,
                                                       path: str) -> None:
    """The webhook's ``timeout`` bounds the whole POST. On the main this replaces it bounded
    each read only: a receiver that sent a byte every 0.2 s kept the delivery open for as long
    as it trickled (here, until it gave up after a minute), and the notification was neither
    delivered nor retried meanwhile."""
    url = f"{receiver.url}{path}"
    receiver.trickles = 1
    item = stored(url, "acme/slow.exe")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add([item])

    asyncio.run(NotifyRuns(outbox, lambda: [hook(url, timeout=2, retries=3)]).send_owed())

    trickled = receiver.arrived[0]
    wait_for("ssftp to hang up on the trickling answer", lambda: receiver.hung_up, timeout=30)
    assert receiver.hung_up == [trickled]  # ssftp gave up on it, not the receiver
    assert receiver.received(path, "acme/slow.exe"), "retried, and delivered once answered"
    assert set(event_ids(receiver.arrived, path)) == {item.id}
    assert outbox.pending([item.id]) == []


def test_a_dead_receiver_costs_one_task_run_per_cycle(prefect_api: str, tmp_path: Path,
                                                      receiver: WebhookReceiver,
                                                      quick_redelivery: float) -> None:
    """However many notifications a dead receiver is owed, a cycle POSTs one (with its
    retries), in one task run; the others wait with it, untried. On the main this replaces,
    each of the 20 was a task run with its retries (40 POSTs, 20 task runs per cycle), each
    with its states and logs in Prefect's database. A good receiver in the same runs is not
    held up."""
    dead, good = f"{receiver.url}/dead", f"{receiver.url}/good"
    to_dead = [stored(dead, f"acme/dead-{n:02d}.exe") for n in range(20)]
    to_good = [stored(good, f"acme/good-{n}.exe") for n in range(3)]
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add(to_dead + to_good)
    runs = NotifyRuns(outbox, lambda: [hook(dead), hook(good)])

    asyncio.run(runs.send_owed())

    assert sorted(event_ids(receiver.requests, "/good")) == sorted(item.id for item in to_good)
    first = event_ids(receiver.requests, "/dead")
    assert len(first) == 2 and len(set(first)) == 1  # one notification: a POST and its retry
    dead_ids = [item.id for item in to_dead]
    assert [item.id for item in outbox.pending(dead_ids)] == dead_ids  # all still owed
    assert outbox.owed(now=time.time(), limit=100) == []
    assert len(outbox.owed(now=time.time() + quick_redelivery + 1, limit=100)) == 20

    next_cycle(outbox)
    asyncio.run(runs.send_owed())

    second = event_ids(receiver.requests, "/dead")[2:]
    assert len(second) == 2 and set(second) != set(first)  # the next one in line, not the same
    assert len(outbox.pending(dead_ids)) == 20
    ours = {item.id for item in to_dead + to_good}
    expected = [[f"virusFound for acme/{name}" for name in names] for names in
                (["dead-00.exe", "good-0.exe", "good-1.exe", "good-2.exe"], ["dead-01.exe"])]
    wait_for("one task run for the dead receiver in each of the two runs",
             lambda: asyncio.run(task_runs_of(ours)) == expected, timeout=30)


def test_a_notification_its_receiver_refuses_does_not_hold_up_the_others(
        prefect_api: str, tmp_path: Path, receiver: WebhookReceiver,
        quick_redelivery: float) -> None:
    """A receiver that refuses one notification (HTTP 400, always) but takes the others: the
    refused one fails alone. It was first in line, so its failure made the others wait one
    cycle; in the next, those never tried go first and are delivered, the refused one last."""
    url = f"{receiver.url}/hook"
    refused, *others = [stored(url, f"acme/{n}.exe") for n in range(4)]
    receiver.refused.add(refused.id)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add([refused, *others])
    runs = NotifyRuns(outbox, lambda: [hook(url)])

    asyncio.run(runs.send_owed())
    assert event_ids(receiver.requests, "/hook") == [refused.id, refused.id]

    next_cycle(outbox)
    asyncio.run(runs.send_owed())

    sent = event_ids(receiver.requests, "/hook")[2:]
    assert sorted(sent) == sorted([refused.id, refused.id, *(item.id for item in others)])
    assert [item.id for item in outbox.pending([refused.id, *(o.id for o in others)])] == [
        refused.id]


def test_a_dead_receiver_does_not_hold_up_the_next_run(prefect_api: str, tmp_path: Path,
                                                       receiver: WebhookReceiver,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """More is owed than one run takes: the first run, all to a dead receiver, fails, and the
    next one, to a good receiver, goes at once, not at the next periodic look at the outbox
    (on the main this replaces, a failed run ended the sending)."""
    monkeypatch.setattr(notify, "IDS_PER_RUN", 5)
    dead, good = f"{receiver.url}/dead", f"{receiver.url}/good"
    to_dead = [stored(dead, f"acme/dead-{n}.exe") for n in range(5)]
    to_good = [stored(good, f"acme/good-{n}.exe") for n in range(2)]
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add(to_dead + to_good)

    asyncio.run(NotifyRuns(outbox, lambda: [hook(dead), hook(good)]).send_owed())

    assert sorted(event_ids(receiver.requests, "/good")) == sorted(item.id for item in to_good)
    assert len(event_ids(receiver.requests, "/dead")) == 2
    assert len(outbox.pending([item.id for item in to_dead + to_good])) == 5
