"""The downloader and uploader deployments, and their schedules from ssftp.yaml.

Two deployments per instance, ``download/<instanceName>`` and ``upload/<instanceName>``, each
with one schedule per entry (slug and ``name`` parameter = the entry's name), served or left
to a work pool by :class:`deployments.schedules.ScheduledDeployments`.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from prefect.client.schemas.actions import DeploymentScheduleUpdate
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

from client.kinds import DOWNLOAD, UPLOAD, Entry, TransferKind
from deployments.schedules import Scheduled
from flows.download import download
from flows.upload import upload
from ssftp.config.schema import SsftpConfig


def wanted_schedules(kind: TransferKind[Entry],
                     config: SsftpConfig) -> list[DeploymentScheduleUpdate]:
    """One schedule per entry; none when the kind is switched off."""
    schedules = []
    for entry in kind.scheduled(config):
        how, value = entry.schedule
        schedule = (CronSchedule(cron=str(value)) if how == "cron"
                    else IntervalSchedule(interval=timedelta(seconds=int(value))))
        schedules.append(DeploymentScheduleUpdate(schedule=schedule, active=True,
                                                  slug=entry.name,
                                                  parameters={"name": entry.name}))
    return schedules


def _transfers(kind: TransferKind[Any], flow: Any) -> Scheduled:
    return Scheduled(name=kind.name, flow=flow, does=f"{kind.name}s",
                     wanted=partial(wanted_schedules, kind))


TRANSFER_DEPLOYMENTS = (_transfers(DOWNLOAD, download), _transfers(UPLOAD, upload))
