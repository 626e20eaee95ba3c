"""The signature update deployment, ``signatures/<instanceName>``, on
``clamav.signatures.updateInterval``.

Scheduled only where ssftp can update the signatures of the clamd it scans with: its own
clamd (``ssftp up``), or a clamd of the operator's whose ``databaseDirectory`` is configured.
Scanning off, or an interval of 0, means no schedule (``ssftp update-signatures`` still works).
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.schemas.actions import DeploymentScheduleUpdate
from prefect.client.schemas.schedules import IntervalSchedule

from deployments.schedules import Scheduled
from flows.signatures import signatures
from ssftp.config.schema import SsftpConfig


def updatable(config: SsftpConfig) -> bool:
    """Whether ssftp can update the signatures of the clamd this config scans with."""
    return (config.clamav.address is None
            or config.clamav.signatures.database_directory is not None)


def wanted_schedules(config: SsftpConfig) -> list[DeploymentScheduleUpdate]:
    interval = config.clamav.signatures.update_interval
    if not config.enable_virus_scan or interval == 0 or not updatable(config):
        return []
    return [DeploymentScheduleUpdate(schedule=IntervalSchedule(interval=timedelta(
        seconds=interval)), active=True, slug="signatures", parameters={})]


SIGNATURES = Scheduled(name="signatures", flow=signatures, does="signature updates",
                       wanted=wanted_schedules)
