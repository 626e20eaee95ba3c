"""The scheduled deployments of an instance, kept in line with ssftp.yaml, and served.

Each :class:`Scheduled` is one deployment ``<flow name>/<instanceName>`` (the downloads, the
uploads, the signature updates) with the schedules a config asks for. A run's parameters carry
only the paths: each run reads ssftp.yaml itself.

Who runs them: when ``prefect deploy --all`` (prefect.yaml) put a deployment on a work pool,
that pool's workers do, and ssftp only keeps its schedules in line with ssftp.yaml. Otherwise
ssftp serves it itself (a Prefect runner in this process; each run is a subprocess). Either
way a config reload adds, changes and removes schedules without a restart.

Runs of one schedule (one downloader, one uploader) never overlap, and the ticks that come due
while the previous run still goes are skipped quietly rather than started to do nothing:
:func:`skip_busy_ticks` deletes them before the runner picks them up. Prefect's own means do
not fit: a deployment's concurrency limit counts every entry of ``download/<instanceName>``
together (one slow downloader would hold up the others), its collision strategies either
queue the ticks (``ENQUEUE``: a pile-up that runs back to back) or end each one ``Cancelled``
(``CANCEL_NEW``: a run per tick in the runs list); the runner's ``limit`` counts all its runs
and logs "N scheduled runs skipped (at capacity)" while it is reached; and a schedule's
``max_scheduled_runs`` is not used by the scheduler of Prefect 3.8.8. The run lock
(``ssftp.run_lock``) stays the safety net for runs started by hand or by a work pool's worker.

On start, this config's deployments under another name (an ``instanceName`` changed) are
paused (:func:`stale_deployments`): their runs would otherwise come due for nobody and stay
Late. Paused, not deleted: their run history stays grouped under the old name, pausing deletes
their scheduled runs, and an operator who goes back to the old name (or deletes them) decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleUpdate, DeploymentUpdate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterNextScheduledStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.exceptions import ObjectNotFound
from prefect.runner import Runner
from prefect.types.entrypoint import EntrypointType

from flows import RUNNER_PARENT
from ssftp.config.reload import ActiveConfig, ConfigStore
from ssftp.config.schema import SsftpConfig
from ssftp.logs import APP, log_event

logger = logging.getLogger(APP)

# How often the runner asks Prefect for due runs, and how far ahead it takes them.
POLL_SECONDS = 5
PREFETCH_SECONDS = 10
# How often the ticks of busy schedules are skipped, and how far ahead: beyond what the runner
# takes, so it never finds two due runs of one schedule, nor one of a busy schedule.
SKIP_SECONDS = 1
SKIP_AHEAD_SECONDS = PREFETCH_SECONDS + 2 * SKIP_SECONDS
# The states of a run that is going (or about to): a tick of its schedule must wait.
GOING = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
# Runs read per look; far more than the ticks of a few seconds of every schedule.
RUNS_READ = 200

ScheduleKey = tuple[str, str, bool, str]


@dataclass(frozen=True)
class Scheduled:
    """One deployment of an instance: its name (``download``), the flow it runs, what it does
    (its description in Prefect), and the schedules a config asks for (none: not created)."""

    name: str
    flow: Flow[Any, Any]
    does: str
    wanted: Callable[[SsftpConfig], list[DeploymentScheduleUpdate]]


def _key(slug: str | None, schedule: object, active: bool | None,
         parameters: dict[str, Any] | None) -> ScheduleKey:
    if isinstance(schedule, CronSchedule):
        when = f"cron {schedule.cron}"
    elif isinstance(schedule, IntervalSchedule):
        when = f"every {schedule.interval.total_seconds():g}s"
    else:
        when = repr(schedule)
    return (slug or "", when, bool(active), repr(sorted((parameters or {}).items())))


def same_schedules(current: DeploymentResponse,
                   wanted: Sequence[DeploymentScheduleUpdate]) -> bool:
    have = sorted(_key(s.slug, s.schedule, s.active, s.parameters) for s in current.schedules)
    want = sorted(_key(s.slug, s.schedule, s.active, s.parameters) for s in wanted)
    return have == want


async def sync_schedules(deployment_id: UUID, wanted: list[DeploymentScheduleUpdate]) -> bool:
    """Make the deployment's schedules ``wanted`` and unpause it; True when it changed.

    Unchanged schedules are left alone: replacing them would drop the runs already scheduled.
    """
    async with get_client() as client:
        current = await client.read_deployment(deployment_id)
        if same_schedules(current, wanted) and not current.paused:
            return False
        # Prefect updates schedules by slug and leaves out the ones not named: remove those.
        slugs = {schedule.slug for schedule in wanted}
        for schedule in current.schedules:
            if schedule.slug not in slugs:
                await client.delete_deployment_schedule(deployment_id, schedule.id)
        await client.update_deployment(deployment_id,
                                       DeploymentUpdate(schedules=wanted, paused=False))
        return True


def _schedule_of(run: FlowRun) -> tuple[UUID | None, object]:
    """Which schedule a run belongs to: its deployment and entry (the ``name`` parameter of a
    transfer; a deployment with one schedule has none)."""
    return run.deployment_id, run.parameters.get("name")


def ticks_to_skip(due: Sequence[FlowRun], going: Sequence[FlowRun]) -> list[FlowRun]:
    """Of the runs ``due`` (Scheduled, due soon), the ticks to delete: every one of a schedule
    with a run ``going``, and all but the earliest of any other. Only runs a schedule made
    (``auto_scheduled``) are ticks: a run started by hand always runs."""
    busy = {_schedule_of(run) for run in going}
    kept: set[tuple[UUID | None, object]] = set()
    skipped = []
    never = datetime.max.replace(tzinfo=UTC)
    for run in sorted(due, key=lambda run: run.next_scheduled_start_time or never):
        schedule = _schedule_of(run)
        if run.auto_scheduled and (schedule in busy or schedule in kept):
            skipped.append(run)
        kept.add(schedule)
    return skipped


async def skip_busy_ticks(deployment_ids: Collection[UUID],
                          ahead: float = SKIP_AHEAD_SECONDS) -> int:
    """Delete the ticks (:func:`ticks_to_skip`) of these deployments due within ``ahead``
    seconds; how many."""
    if not deployment_ids:
        return 0
    deployments = FlowRunFilterDeploymentId(any_=list(deployment_ids))
    before = datetime.now(UTC) + timedelta(seconds=ahead)
    async with get_client() as client:
        going = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=deployments,
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=GOING))),
            limit=RUNS_READ)
        due = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=deployments,
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            next_scheduled_start_time=FlowRunFilterNextScheduledStartTime.model_validate(
                {"before_": before})),
            limit=RUNS_READ)
        skipped = ticks_to_skip(due, going)
        for run in skipped:
            with contextlib.suppress(ObjectNotFound):  # the runner took it meanwhile
                await client.delete_flow_run(run.id)
    return len(skipped)


def stale_deployments(deployments: Sequence[DeploymentResponse], instance: str,
                      parameters: dict[str, Any]) -> list[DeploymentResponse]:
    """The deployments this config and data root left under another name: same paths, not
    ``instance``, served (not on a work pool: that one's schedules are its operator's), not
    paused yet. Another data root's (another instance's) have other paths."""
    return [deployment for deployment in deployments
            if deployment.name != instance and not deployment.work_pool_name
            and not deployment.paused
            and all(deployment.parameters.get(key) == value
                    for key, value in parameters.items())]


async def _finish(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to its end even when this task is cancelled again meanwhile: a stop whose
    caller cancels twice (a ``gather`` cancels its parts, then the caller each part) was cut
    short, and left the runner's temp directory and unawaited coroutines behind. ``work``
    bounds itself."""
    task = asyncio.ensure_future(work)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)


class ScheduledDeployments:
    """Keeps this instance's scheduled deployments in line with ssftp.yaml, and serves them."""

    def __init__(self, store: ConfigStore, config_path: str, data_dir: str,
                 deployments: Sequence[Scheduled]) -> None:
        self.store = store
        self.config_path = config_path
        self.data_dir = data_dir
        self.deployments = deployments
        self.instance = store.current.loaded.config.instance_name
        self.deployment_ids: dict[str, UUID] = {}
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = Runner(name=f"ssftp-{self.instance}", query_seconds=POLL_SECONDS,
                              prefetch_seconds=PREFETCH_SECONDS, pause_on_shutdown=True)
        self._served: set[UUID] = set()
        # Its flow run processes die with this one (flows/__init__.py); they inherit this.
        os.environ[RUNNER_PARENT] = str(os.getpid())
        self._serving: asyncio.Task[None] | None = None
        self._skipping: asyncio.Task[None] | None = None
        store.on_change(self._config_changed)

    def _config_changed(self, active: ActiveConfig) -> None:
        # Called on the thread that reloaded the config; the sync runs on our own loop.
        if active.loaded.config.instance_name != self.instance:
            log_event(logger, "instanceName changed: the scheduled deployments keep the old "
                      "name until ssftp restarts", logging.WARNING, instance=self.instance)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed.set)

    async def _existing(self, flow: Flow[Any, Any]) -> DeploymentResponse | None:
        async with get_client() as client:
            try:
                return await client.read_deployment_by_name(f"{flow.name}/{self.instance}")
            except ObjectNotFound:
                return None

    async def _register(self, scheduled: Scheduled) -> None:
        """Serve the deployment unless a work pool runs it; remember its id either way."""
        flow = scheduled.flow
        parameters = {"config": self.config_path, "data_dir": self.data_dir}
        existing = await self._existing(flow)
        pooled = existing if existing is not None and existing.work_pool_name else None
        if existing is not None and pooled is None and existing.parameters != parameters:
            # Another instance with the same instanceName on this Prefect server: whichever
            # registered last would run both instances' work with its own config.
            log_event(logger, "another ssftp instance served this deployment with other paths; "
                      "give each instance its own instanceName", logging.WARNING,
                      deployment=f"{flow.name}/{self.instance}",
                      other_data_dir=existing.parameters.get("data_dir"))
        if pooled is not None:
            self.deployment_ids[scheduled.name] = pooled.id
            log_event(logger, "deployment runs on a work pool", kind=scheduled.name,
                      deployment=f"{flow.name}/{self.instance}",
                      work_pool=pooled.work_pool_name)
            return
        deployment = await flow.ato_deployment(
            name=self.instance,
            parameters=parameters,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"ssftp {scheduled.does} of instance {self.instance}, scheduled from "
                        f"{self.config_path}")
        self.deployment_ids[scheduled.name] = await self._runner.aadd_deployment(deployment)
        self._served.add(self.deployment_ids[scheduled.name])
        if self._serving is None:
            self._serving = asyncio.create_task(self._runner.start())
            self._skipping = asyncio.create_task(self._skip_busy_ticks())

    async def _skip_busy_ticks(self) -> None:
        """:func:`skip_busy_ticks` of the deployments this process serves, until cancelled;
        a failure is logged once (Prefect unreachable: the runner cannot start runs either)."""
        failing = False
        while True:
            try:
                await skip_busy_ticks(self._served)
                failing = False
            except Exception as exc:
                if not failing:
                    log_event(logger, "ticks of busy schedules not checked", logging.WARNING,
                              error=f"{type(exc).__name__}: {exc}")
                failing = True
            await asyncio.sleep(SKIP_SECONDS)

    async def pause_stale(self) -> None:
        """Pause this config's deployments left under another name (:func:`stale_deployments`)."""
        parameters = {"config": self.config_path, "data_dir": self.data_dir}
        names = [scheduled.flow.name for scheduled in self.deployments]
        async with get_client() as client:
            found = await client.read_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=names)))
            for deployment in stale_deployments(found, self.instance, parameters):
                await client.pause_deployment(deployment.id)
                log_event(logger, "paused the deployment of an earlier instanceName",
                          logging.WARNING, deployment_id=str(deployment.id),
                          deployment=deployment.name, instance=self.instance)

    async def sync(self) -> None:
        """Bring every deployment's schedules in line with the config.

        A deployment is created the first time the config asks for a schedule of it, so an
        instance without downloaders or uploaders adds nothing to Prefect.
        """
        config = self.store.current.loaded.config
        for scheduled in self.deployments:
            wanted = scheduled.wanted(config)
            if scheduled.name not in self.deployment_ids:
                if not wanted:
                    continue
                await self._register(scheduled)
            if await sync_schedules(self.deployment_ids[scheduled.name], wanted):
                log_event(logger, "schedules updated", kind=scheduled.name,
                          deployment=f"{scheduled.flow.name}/{self.instance}",
                          schedules=[schedule.slug for schedule in wanted])

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Sync, then re-sync on every config change, until cancelled; a failed first sync
        raises (Prefect unreachable), later ones are logged and the old schedules stay."""
        self._loop = asyncio.get_running_loop()
        try:
            await self.pause_stale()
            await self.sync()
            if ready is not None:
                ready.set()
            while True:
                await self._changed.wait()
                self._changed.clear()
                try:
                    await self.sync()
                except Exception as exc:
                    log_event(logger, "schedules not updated", logging.ERROR,
                              error=f"{type(exc).__name__}: {exc}")
        finally:
            if self._skipping is not None:
                self._skipping.cancel()
            if self._serving is not None:
                await _finish(self._stop(self._runner, self._serving))

    @staticmethod
    async def _stop(runner: Runner, serving: asyncio.Task[None]) -> None:
        """Stop polling and end runs in progress (transfers are crash-safe, and an update
        only ever renames whole files into place), and let the runner pause the schedules so
        no runs pile up while nobody serves them."""
        with contextlib.suppress(Exception):
            if runner.started:
                await runner.astop()
        done, _ = await asyncio.wait([serving], timeout=30)
        if not done:
            serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
