"""deployments.schedules' choices, as plain functions: which ticks of busy or crowded
schedules are skipped, and which deployments an earlier instanceName left. Against a real
Prefect: tests/integration/test_flows_transfers.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse

from deployments.schedules import stale_deployments, ticks_to_skip

DOWNLOADS = uuid4()
SIGNATURES = uuid4()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def tick(entry: str | None, seconds: int, *, auto: bool = True,
         deployment: UUID = DOWNLOADS) -> FlowRun:
    return FlowRun(id=uuid4(), flow_id=uuid4(), deployment_id=deployment,
                   parameters={"name": entry} if entry else {}, auto_scheduled=auto,
                   next_scheduled_start_time=NOW + timedelta(seconds=seconds))


def test_the_ticks_of_a_busy_entry_are_skipped_and_the_others_keep_their_earliest():
    busy = [tick("slow", 0), tick("slow", 2)]
    quick = [tick("quick", 4), tick("quick", 2), tick("quick", 6)]
    by_hand = tick("slow", 1, auto=False)
    signatures = tick(None, 3, deployment=SIGNATURES)
    going = [tick("slow", -60)]

    skipped = ticks_to_skip([*busy, *quick, by_hand, signatures], going)

    assert {run.id for run in skipped} == {busy[0].id, busy[1].id, quick[0].id, quick[2].id}


def test_nothing_is_skipped_when_each_schedule_has_one_tick_and_none_is_busy():
    due = [tick("a", 0), tick("b", 0), tick(None, 0, deployment=SIGNATURES)]
    assert ticks_to_skip(due, [tick("c", -5)]) == []


def deployment(name: str, data_dir: str, *, pool: str | None = None,
               paused: bool = False) -> DeploymentResponse:
    return DeploymentResponse(id=uuid4(), name=name, flow_id=uuid4(), paused=paused,
                              work_pool_name=pool,
                              parameters={"config": "/etc/ssftp.yaml", "data_dir": data_dir})


def test_only_this_config_s_served_deployments_under_another_name_are_stale():
    old = deployment("gw-old", "/srv/a")
    found = [old, deployment("gw-new", "/srv/a"), deployment("gw-b", "/srv/b"),
             deployment("gw-pooled", "/srv/a", pool="ssftp"),
             deployment("gw-paused", "/srv/a", paused=True)]
    assert stale_deployments(found, "gw-new", {"config": "/etc/ssftp.yaml",
                                               "data_dir": "/srv/a"}) == [old]
