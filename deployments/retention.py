"""The retention deployment, ``retention/<instanceName>``: one run a day, while ssftp.yaml sets
some ``retention`` days.

Made the first time a config sets days, so an instance that keeps everything adds nothing to
Prefect; a reload that drops them all removes its schedule, one that sets them again brings it
back. Served, or left to a work pool, with the other scheduled deployments
(:class:`deployments.schedules.ScheduledDeployments`); each run reads ssftp.yaml itself.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.schemas.actions import DeploymentScheduleUpdate
from prefect.client.schemas.schedules import IntervalSchedule

from deployments.schedules import Scheduled
from flows.retention import retention
from ssftp.areas.retention import kept_days
from ssftp.config.schema import SsftpConfig

SCHEDULE_SLUG = "daily"


def wanted_schedules(config: SsftpConfig) -> list[DeploymentScheduleUpdate]:
    """A daily run when some area has retention days; none otherwise."""
    if not kept_days(config.retention):
        return []
    return [DeploymentScheduleUpdate(schedule=IntervalSchedule(interval=timedelta(days=1)),
                                     active=True, slug=SCHEDULE_SLUG)]


RETENTION = Scheduled(name="retention", flow=retention, does="retention",
                      wanted=wanted_schedules)
