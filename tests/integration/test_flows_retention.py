"""Retention on the Prefect test harness: the run removes what is older than its area's days
and reports the counts per account and area in its table; the deployment
``retention/<instanceName>`` runs daily only while ssftp.yaml sets some days, and follows a
reload."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.schedules import IntervalSchedule

from deployments.retention import RETENTION
from deployments.schedules import ScheduledDeployments
from flows.artifacts import artifact_key
from flows.retention import retention
from ssftp.areas.retention import DAY_SECONDS
from ssftp.config.reload import ConfigStore
from tests.support.config import write_config
from tests.support.logs import json_lines
from tests.support.waiting import wait_for, wait_for_async

# A second, in days: a file written now is older than that once a second has passed.
A_SECOND = 1 / DAY_SECONDS


def config_with(path, instance: str, retention_yaml: str = "") -> None:
    write_config(path, f"""
instanceName: {instance}
users:
  stagingDir:
    - directory: acme
      auth: {{username: acme, password: pw}}
""" + retention_yaml)


def test_a_run_removes_what_is_older_than_its_days_and_reports_per_account(
        prefect_api, layout, tmp_path, audit_log):
    instance = f"gw-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "ssftp.yaml"
    config_with(config, instance, f"retention:\n  cleanDays: {A_SECOND!r}\n")
    old = layout.clean / "acme" / "report.csv"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"a,b\n")
    kept = layout.quarantine / "acme" / "x.pdf"  # no quarantineDays: kept forever
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"evidence")
    entered = os.lstat(old).st_ctime
    wait_for("the clean file to be older than cleanDays",
             lambda: time.time() - entered > 2 * A_SECOND * DAY_SECONDS)

    report = asyncio.run(retention(str(config), str(layout.root)))

    assert not old.exists()
    assert kept.exists()
    assert report.rows() == [{"account": "acme", "area": "clean", "removed": 1}]
    [record] = [r for r in json_lines(audit_log) if r["event"] == "retention"]
    assert (record["file"], record["account"]) == ("clean/acme/report.csv", "acme")
    artifact = Artifact.get(artifact_key("retention", instance))
    assert artifact is not None and "acme" in str(artifact.data)

    again = asyncio.run(retention(str(config), str(layout.root)))
    assert again.total == 0
    assert kept.exists()


async def schedules(deployments: ScheduledDeployments) -> list[str]:
    async with get_client() as client:
        found = await client.read_deployment(deployments.deployment_ids[RETENTION.name])
        name = f"{(await client.read_flow(found.flow_id)).name}/{found.name}"
    return [f"{name} every {item.schedule.interval.total_seconds():g}s"
            for item in found.schedules if isinstance(item.schedule, IntervalSchedule)]


async def test_the_deployment_runs_daily_only_while_days_are_set(prefect_api, layout,
                                                                 tmp_path):
    instance = f"gw-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "ssftp.yaml"
    config_with(config, instance)
    store = ConfigStore.open(config, layout)
    deployments = ScheduledDeployments(store, str(config), str(layout.root), (RETENTION,))
    ready = asyncio.Event()
    running = asyncio.create_task(deployments.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        assert deployments.deployment_ids == {}  # keeps everything: nothing in Prefect

        config_with(config, instance, "retention:\n  quarantineDays: 90\n")
        assert await asyncio.to_thread(store.reload)
        await wait_for_async("the daily schedule", lambda: RETENTION.name in
                             deployments.deployment_ids and schedules(deployments))
        assert await schedules(deployments) == [f"retention/{instance} every 86400s"]

        config_with(config, instance)
        assert await asyncio.to_thread(store.reload)

        async def unscheduled() -> bool:
            return await schedules(deployments) == []

        await wait_for_async("the schedule to go with the days", unscheduled)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
