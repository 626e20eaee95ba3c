"""The retention deployment, ``retention/<instanceName>``: one run a day, while ssftp.yaml sets
some ``retention`` days.

Made the first time a config sets days, so an instance that keeps everything adds nothing to
Prefect; a reload that drops them all removes its schedule, one that sets them again brings it
back. Served like the transfer deployments (:mod:`deployments.transfers`): by a Prefect runner
in this process, each run a subprocess that reads ssftp.yaml itself, unless a work pool has
taken the deployment (``prefect deploy``), whose schedule ssftp then only keeps in line.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleUpdate
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.exceptions import ObjectNotFound
from prefect.runner import Runner
from prefect.types.entrypoint import EntrypointType

from deployments.transfers import POLL_SECONDS, stop_runner, sync_schedules
from flows.retention import retention
from ssftp.areas.retention import kept_days
from ssftp.config.reload import ActiveConfig, ConfigStore
from ssftp.config.schema import SsftpConfig
from ssftp.logs import APP, log_event

logger = logging.getLogger(APP)
SCHEDULE_SLUG = "daily"


def wanted_schedules(config: SsftpConfig) -> list[DeploymentScheduleUpdate]:
    """A daily run when some area has retention days; none otherwise."""
    if not kept_days(config.retention):
        return []
    return [DeploymentScheduleUpdate(schedule=IntervalSchedule(interval=timedelta(days=1)),
                                     active=True, slug=SCHEDULE_SLUG)]


class RetentionDeployment:
    """Keeps ``retention/<instanceName>`` in line with ssftp.yaml, and serves it."""

    def __init__(self, store: ConfigStore, config_path: str, data_dir: str) -> None:
        self.store = store
        self.parameters = {"config": config_path, "data_dir": data_dir}
        self.instance = store.current.loaded.config.instance_name
        self.deployment_id: UUID | None = None
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = Runner(name=f"ssftp-retention-{self.instance}",
                              query_seconds=POLL_SECONDS, pause_on_shutdown=True)
        self._serving: asyncio.Task[None] | None = None
        store.on_change(self._config_changed)

    @property
    def name(self) -> str:
        return f"{retention.name}/{self.instance}"

    def _config_changed(self, active: ActiveConfig) -> None:
        # Called on the thread that reloaded the config; the sync runs on our own loop.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed.set)

    async def _register(self) -> UUID:
        """Serve the deployment, unless a work pool runs it."""
        async with get_client() as client:
            try:
                existing = await client.read_deployment_by_name(self.name)
            except ObjectNotFound:
                existing = None
        if existing is not None and existing.work_pool_name:
            log_event(logger, "retention deployment runs on a work pool", deployment=self.name,
                      work_pool=existing.work_pool_name)
            return existing.id
        deployment = await retention.ato_deployment(
            name=self.instance, parameters=self.parameters,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"ssftp retention of instance {self.instance}, days from "
                        f"{self.parameters['config']}")
        deployment_id = await self._runner.aadd_deployment(deployment)
        self._serving = asyncio.create_task(self._runner.start())
        return deployment_id

    async def sync(self) -> None:
        """Bring the schedule in line with the config."""
        wanted = wanted_schedules(self.store.current.loaded.config)
        if self.deployment_id is None:
            if not wanted:
                return
            self.deployment_id = await self._register()
        if await sync_schedules(self.deployment_id, wanted):
            log_event(logger, "retention schedule updated", deployment=self.name,
                      daily=bool(wanted))

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Sync, then re-sync on every config change, until cancelled; a failed first sync
        raises (Prefect unreachable), later ones are logged and the old schedule stays."""
        self._loop = asyncio.get_running_loop()
        try:
            await self.sync()
            if ready is not None:
                ready.set()
            while True:
                await self._changed.wait()
                self._changed.clear()
                try:
                    await self.sync()
                except Exception as exc:
                    log_event(logger, "retention schedule not updated", logging.ERROR,
                              error=f"{type(exc).__name__}: {exc}")
        finally:
            if self._serving is not None:
                await stop_runner(self._runner, self._serving)
