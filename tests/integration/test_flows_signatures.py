"""The signature update as Prefect sees it (the session's test harness), with the real freshclam
and the clamd that ``ssftp up`` would start on the data root's own database: each update is a
run whose final state says the signatures before and after, a failed one is Failed with the
reason, and the ``signatures/<instanceName>`` deployment is scheduled on its interval."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.schedules import IntervalSchedule

from deployments.schedules import ScheduledDeployments
from deployments.signatures import SIGNATURES, update_at_start
from flows.signatures import signatures
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from ssftp.scan.database import seed
from tests.support.waiting import wait_for_async

SIGNATURE = "Ssftp.Test.Flow:0:*:{}\n".format(b"harmless flow test content".hex())




def write_config(layout: DataLayout, signatures_yaml: str) -> Path:
    config = layout.root.parent / "ssftp.yaml"
    config.write_text(f"instanceName: {layout.root.parent.name}\n"
                      f"clamav:\n  signatures: {signatures_yaml}\n")
    return config


async def test_an_update_is_a_run_with_before_and_after_in_its_state(prefect_api, layout,
                                                                     own_clamd):
    site = layout.root.parent / "site.ndb"
    site.write_text(SIGNATURE)
    config = write_config(layout, f"{{official: false, customUrls: ['{site.as_uri()}']}}")

    updated = await signatures(str(config), str(layout.root), return_state=True)
    assert updated.is_completed() and updated.name == "Updated"
    assert updated.message is not None and " -> " in updated.message

    again = await signatures(str(config), str(layout.root), return_state=True)
    assert again.is_completed() and again.name == "Completed"
    assert again.message == f"unchanged: {updated.message.split(' -> ')[1]}"


async def test_a_failed_update_is_a_failed_run_with_the_reason(prefect_api, layout, own_clamd):
    missing = layout.root.parent / "missing.ndb"
    config = write_config(layout, f"{{official: false, customUrls: ['{missing.as_uri()}']}}")

    state = await signatures(str(config), str(layout.root), return_state=True)

    assert state.is_failed()
    assert state.message is not None and "\n" not in state.message
    assert "custom signatures not updated" in state.message and "missing.ndb" in state.message


async def test_a_clamd_ssftp_cannot_update_fails_the_run_saying_why(prefect_api, layout):
    config = layout.root.parent / "ssftp.yaml"
    config.write_text("clamav: {address: '127.0.0.1:3310'}\n")

    state = await signatures(str(config), str(layout.root), return_state=True)

    assert state.is_failed() and "databaseDirectory" in (state.message or "")


async def interval_of(deployment_id) -> list[float]:
    async with get_client() as client:
        deployment = await client.read_deployment(deployment_id)
    return [schedule.schedule.interval.total_seconds() for schedule in deployment.schedules
            if isinstance(schedule.schedule, IntervalSchedule)]


async def test_the_deployment_runs_on_the_update_interval(prefect_api, layout):
    config = write_config(layout, "{updateInterval: 900}")
    store = ConfigStore.open(config, layout)
    scheduled = ScheduledDeployments(store, str(config), str(layout.root), (SIGNATURES,))
    ready = asyncio.Event()
    running = asyncio.create_task(scheduled.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        deployment_id = scheduled.deployment_ids["signatures"]
        async with get_client() as client:
            deployment = await client.read_deployment(deployment_id)
        assert deployment.name == layout.root.parent.name
        assert deployment.parameters == {"config": str(config), "data_dir": str(layout.root)}
        assert await interval_of(deployment_id) == [900.0]

        # 0 switches the schedule off, on a hot reload.
        write_config(layout, "{updateInterval: 0}")
        assert store.reload()
        async def unscheduled() -> bool:
            return await interval_of(deployment_id) == []

        await wait_for_async("the schedule to be removed", unscheduled)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def runs_by_hand(deployment_id) -> int:
    """The deployment's runs that no schedule created."""
    async with get_client() as client:
        runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment_id])))
    return sum(1 for run in runs if not run.auto_scheduled)


@pytest.mark.parametrize("official", [True, False])
async def test_a_start_without_official_signatures_updates_at_once(prefect_api, layout,
                                                                   official):
    """Waiting one interval would scan with the EICAR test signatures alone until then."""
    seed(layout.signatures, official=False)
    config = write_config(layout, f"{{official: {str(official).lower()}}}")
    scheduled = ScheduledDeployments(ConfigStore.open(config, layout), str(config),
                                     str(layout.root), (SIGNATURES,))
    ready = asyncio.Event()
    running = asyncio.create_task(scheduled.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)

        await update_at_start(scheduled, layout)

        assert await runs_by_hand(scheduled.deployment_ids["signatures"]) == int(official)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
