"""The signature update as a Prefect flow: each update is a run, with freshclam's output in its
log and the signatures before and after in its final state's message.

Thin over :func:`ssftp.scan.updates.update_signatures`. A run reads ssftp.yaml itself
(parameters carry only the paths), so a change of ``customUrls`` or ``official`` applies from
the next run on. Final states: ``Updated`` (clamd loaded new signatures), ``Completed``
(nothing changed), ``Failed`` with the one-line reason. The official download failing offline
is a warning in the log, not a failure: the custom signatures still updated, and scanning goes
on with what clamd has.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from ssftp.config.loader import load_config
from ssftp.errors import ConfigError, SignatureUpdateError
from ssftp.layout import DataLayout
from ssftp.logs import one_line
from ssftp.scan.database import update_target
from ssftp.scan.updates import update_signatures


@flow(name="signatures", flow_run_name="update signatures", persist_result=False)
async def signatures(config: str, data_dir: str) -> State[None]:
    logger = get_run_logger()
    try:
        settings = load_config(Path(config)).config
        target = update_target(settings, DataLayout.at(data_dir))
        result = await asyncio.to_thread(update_signatures, settings.clamav.signatures, target)
    except ConfigError as exc:
        reason = f"{config} is not a valid ssftp.yaml: " + "; ".join(
            issue.describe(exc.source) for issue in exc.issues)
        logger.error("%s", reason)
        return Failed(message=reason)
    except SignatureUpdateError as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc))
    for line in result.freshclam_output.splitlines():
        if line.strip():
            logger.info("freshclam: %s", line.strip())
    for name in result.removed:
        logger.info("removed %s: no custom URL gives it any more", one_line(name))
    for warning in result.warnings:
        logger.warning("%s", one_line(warning))
    if result.failure is not None:
        logger.error("%s", one_line(result.failure))
        return Failed(message=one_line(f"{result.failure} ({result.describe()})"))
    logger.info("%s", result.describe())
    if result.changed:
        return Completed(name="Updated", message=result.describe())
    return Completed(message=result.describe())
