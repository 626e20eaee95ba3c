"""The release flow on the Prefect test harness with the real clamd: a release is a run, and
with ``quarantine.releaseApproval`` it pauses for a second person's input (resumed here as the
Prefect UI resumes it, with run input) before anything moves."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import PurePosixPath
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_runs import aresume_flow_run

from flows.quarantine import ReleaseRuns
from ssftp.areas.release import Releaser, Request
from ssftp.notify.outbox import Outbox
from ssftp.notify.owed import RELEASED_EVENT
from testkit.files import EICAR
from tests.support.events import events_of
from tests.support.logs import json_lines
from tests.support.quarantine import quarantine_config, quarantined
from tests.support.scanning import files_under, sha256
from tests.support.waiting import wait_for_async

NAME = PurePosixPath("acme/x.pdf")
_RUN_ID = re.compile(r"flow run ([0-9a-f-]{36})")


def releaser_for(layout, client, receiver, *, approval: bool) -> tuple[Releaser, str]:
    instance = f"gw-{uuid.uuid4().hex[:8]}"
    config = quarantine_config(f"{receiver.url}/released", instanceName=instance,
                               quarantine={"releaseApproval": approval})
    return Releaser(layout, client, mode="auto", outbox=Outbox(layout.outbox),
                    config=config), instance


async def release_answered(runs: ReleaseRuns, announced: list[str], request: Request,
                           answer: dict[str, object]):
    """Run a release and, once it is paused for its approver, resume it with ``answer``."""
    async def approver() -> None:
        line = await wait_for_async("the run to say where it waits", lambda: announced)
        run_id = UUID(_RUN_ID.search(line[0]).group(1))

        async def paused() -> bool:
            async with get_client() as client:
                run = await client.read_flow_run(run_id)
            return run.state is not None and run.state.is_paused()

        await wait_for_async("the release run to pause for input", paused)
        await aresume_flow_run(run_id, run_input=answer)

    outcome, _ = await asyncio.gather(runs.run(NAME, request), approver())
    return outcome


def test_an_approved_release_waits_for_the_approver_then_moves(prefect_api, layout, client,
                                                               receiver, audit_log):
    path = quarantined(layout, client, "acme/x.pdf", EICAR)
    releaser, instance = releaser_for(layout, client, receiver, approval=True)
    announced: list[str] = []
    runs = ReleaseRuns(releaser, approval=True, announce=announced.append, timeout=600)

    outcome = asyncio.run(release_answered(runs, announced, Request(
        "known test file", "ann", force=True), {"approver": "bob", "approve": True}))

    assert outcome.released
    assert (layout.clean / NAME).read_bytes() == EICAR
    assert not path.exists()
    [record] = [r for r in json_lines(audit_log) if r["event"] == "release"]
    assert (record["approver"], record["operator"], record["reason"]) == (
        "bob", "ann", "known test file")
    assert record["flow_run_id"]
    [event] = events_of([RELEASED_EVENT], instance, 1)
    assert event.resource.id == f"ssftp.file.{sha256(EICAR)}"
    [posted] = receiver.received("/released", "quarantine/acme/x.pdf")
    assert posted.json()["approver"] == "bob"


@pytest.mark.parametrize(("answer", "why"), [
    ({"approver": "bob", "approve": False}, "rejected by bob"),
    ({"approver": "ANN", "approve": True}, "cannot approve their own release"),
], ids=["rejected", "own-approval"])
def test_a_rejected_release_moves_nothing(prefect_api, layout, client, receiver, audit_log,
                                          answer, why):
    path = quarantined(layout, client, "acme/x.pdf", EICAR)
    releaser, _ = releaser_for(layout, client, receiver, approval=True)
    announced: list[str] = []
    runs = ReleaseRuns(releaser, approval=True, announce=announced.append, timeout=600)

    outcome = asyncio.run(release_answered(runs, announced, Request("r", "ann", force=True),
                                           answer))

    assert not outcome.released
    assert why in outcome.message
    assert path.read_bytes() == EICAR
    assert files_under(layout.clean) == []
    [record] = [r for r in json_lines(audit_log) if r["event"] == "release"]
    assert record["released"] is False
    assert why in record["refused"]
    assert receiver.requests == []


def test_a_still_detected_file_is_refused_before_anyone_is_asked(prefect_api, layout, client,
                                                                 receiver, audit_log):
    path = quarantined(layout, client, "acme/x.pdf", EICAR)
    releaser, _ = releaser_for(layout, client, receiver, approval=True)
    announced: list[str] = []
    runs = ReleaseRuns(releaser, approval=True, announce=announced.append, timeout=600)

    outcome = asyncio.run(runs.run(NAME, Request("r", "ann")))

    assert not outcome.released
    assert "still infected" in outcome.message
    assert announced == []
    assert path.exists()


def test_a_release_nobody_approves_in_time_moves_nothing(prefect_api, layout, client,
                                                         receiver, audit_log):
    path = quarantined(layout, client, "acme/x.pdf", EICAR)
    releaser, _ = releaser_for(layout, client, receiver, approval=True)
    announced: list[str] = []
    runs = ReleaseRuns(releaser, approval=True, announce=announced.append, timeout=1)

    outcome = asyncio.run(runs.run(NAME, Request("r", "ann", force=True)))

    assert not outcome.released
    assert "not approved within 1 s" in outcome.message
    assert announced
    assert path.exists()
    assert files_under(layout.clean) == []
    [record] = [r for r in json_lines(audit_log) if r["event"] == "release"]
    assert record["released"] is False
    assert "not approved within 1 s" in record["refused"]
