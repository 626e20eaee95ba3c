"""The signature update deployment, ``signatures/<instanceName>``, on
``clamav.signatures.updateInterval``.

Scheduled only where ssftp can update the signatures of the clamd it scans with: its own
clamd (``ssftp up``), or a clamd of the operator's whose ``databaseDirectory`` is configured.
Scanning off, or an interval of 0, means no schedule (``ssftp update-signatures`` still works).

A schedule's first run is one interval after the start. A database without the official
signatures (a first start on a machine where Debian's freshclam never ran) would scan with the
EICAR test signatures alone until then: such a start runs one update at once
(:func:`update_at_start`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleUpdate
from prefect.client.schemas.schedules import IntervalSchedule

from deployments.schedules import Scheduled, ScheduledDeployments
from flows.signatures import signatures
from ssftp.config.schema import SsftpConfig
from ssftp.errors import SignatureUpdateError
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event
from ssftp.scan.database import official_files, updatable, update_target

logger = logging.getLogger(APP)


def wanted_schedules(config: SsftpConfig) -> list[DeploymentScheduleUpdate]:
    interval = config.clamav.signatures.update_interval
    if not config.enable_virus_scan or interval == 0 or not updatable(config):
        return []
    return [DeploymentScheduleUpdate(schedule=IntervalSchedule(interval=timedelta(
        seconds=interval)), active=True, slug="signatures", parameters={})]


SIGNATURES = Scheduled(name="signatures", flow=signatures, does="signature updates",
                       wanted=wanted_schedules)


async def update_at_start(scheduled: ScheduledDeployments, layout: DataLayout) -> None:
    """Run one update now when the official signatures are wanted and the database has none
    of them yet; otherwise the schedule's first run, one interval on, is soon enough."""
    config = scheduled.store.current.loaded.config
    deployment_id = scheduled.deployment_ids.get(SIGNATURES.name)
    if deployment_id is None or not config.clamav.signatures.official:
        return
    try:
        database = update_target(config, layout).database
    except SignatureUpdateError:
        return
    if official_files(database):
        return
    try:
        async with get_client() as client:
            await client.create_flow_run_from_deployment(deployment_id)
    except Exception as exc:  # the schedule's runs still come
        log_event(logger, "signature update at start not started", logging.WARNING,
                  error=f"{type(exc).__name__}: {exc}")
        return
    log_event(logger, "no official signatures yet: a signature update runs now",
              database=str(database))
