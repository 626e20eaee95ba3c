"""When the ``signatures/<instanceName>`` deployment is scheduled: only where ssftp can update
the signatures of the clamd it scans with, and only while scanning is on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect.client.schemas.schedules import IntervalSchedule

from deployments.signatures import wanted_schedules
from ssftp.config.schema import SsftpConfig


def config(**values: object) -> SsftpConfig:
    return SsftpConfig.model_validate(values)


def test_ssftp_ups_own_clamd_is_updated_on_the_interval():
    [wanted] = wanted_schedules(config(clamav={"signatures": {"updateInterval": 900}}))
    assert isinstance(wanted.schedule, IntervalSchedule)
    assert wanted.schedule.interval == timedelta(seconds=900)
    assert (wanted.slug, wanted.active) == ("signatures", True)


@pytest.mark.parametrize("values", [
    {"clamav": {"signatures": {"updateInterval": 0}}},
    {"enableVirusScan": False},
    {"clamav": {"address": "clamd:3310"}},
])
def test_no_schedule(values):
    assert wanted_schedules(config(**values)) == []


def test_a_clamd_of_the_operators_with_its_database_directory():
    assert len(wanted_schedules(config(clamav={
        "address": "clamd:3310", "signatures": {"databaseDirectory": "/var/lib/clamav"}}))) == 1
