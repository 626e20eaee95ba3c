"""The retention flow: one run a day per instance (deployment ``retention/<instanceName>``)
removes what has been in its area longer than ``retention`` says
(:mod:`ssftp.areas.retention`).

Like a transfer run, it reads ssftp.yaml itself (its parameters are the config's and the data
root's paths), so a reload's days apply to the next run. Its table artifact is the report
SFTPGo's retention sends: files removed per account and area; its final state's message the
total, and a run that could not remove some file fails, naming the first.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from flows.artifacts import artifact_key, publish_quarantine_table
from ssftp.areas.retention import Report, apply_retention, kept_days
from ssftp.config.loader import load_config
from ssftp.errors import ConfigError
from ssftp.layout import DataLayout
from ssftp.logs import AUDIT, configure_logging
from ssftp.scan.owners import StagingOwners


@flow(name="retention", flow_run_name="retention", log_prints=False)
async def retention(config: str, data_dir: str) -> State[Report]:
    """Remove what is older than its area's days in the data root ``data_dir``."""
    logger = get_run_logger()
    try:
        settings = load_config(Path(config)).config
    except ConfigError as exc:  # nothing removed while the config cannot be read
        message = f"{config} is not a valid ssftp.yaml: " + "; ".join(
            issue.describe(exc.source) for issue in exc.issues)
        logger.error("%s", message)
        return Failed(message=message, data=Report())
    layout = DataLayout.at(data_dir)
    if not logging.getLogger(AUDIT).handlers:
        # A run started by a Prefect runner in its own process: write the audit log where
        # the rest of this instance writes it.
        configure_logging(settings.log_dirs(layout), stdout=False)
    days = kept_days(settings.retention)
    if not days:
        logger.info("no retention days are set in %s: nothing removed", config)
        return Completed(message="nothing removed: no retention days set", data=Report())
    report = await asyncio.to_thread(apply_retention, layout, settings.retention,
                                     StagingOwners(settings).owner_of,
                                     instance=settings.instance_name)
    summary = (f"{report.total} file(s) removed ("
               + ", ".join(f"{area} after {value:g} days" for area, value in days.items())
               + ")")
    await acreate_table_artifact(table=report.rows(),
                                 key=artifact_key("retention", settings.instance_name),
                                 description=summary)
    if report.total:
        await publish_quarantine_table(layout, settings.instance_name)
    if report.failed:
        message = f"{summary}; {len(report.failed)} not removed, first: {report.failed[0]}"
        logger.error("%s", message)
        return Failed(message=message, data=report)
    logger.info("%s", summary)
    return Completed(message=summary, data=report)
