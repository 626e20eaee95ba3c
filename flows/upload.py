"""The upload flow: one run of an uploader, as Prefect schedules and records it.

The work is :mod:`client.upload`; what every transfer run adds around it (retries, the
per-host limit, the run lock, the table) is :mod:`flows.transfer_run`.
"""

from __future__ import annotations

from prefect import flow
from prefect.client.schemas.objects import State

from client.kinds import UPLOAD
from flows.transfer_run import run_transfer
from ssftp.transfer.local import TransferResult


@flow(name="upload", flow_run_name="upload {name}", log_prints=False)
async def upload(name: str, config: str, data_dir: str) -> State[list[TransferResult]]:
    """One run of the uploader ``name`` from the ssftp.yaml at ``config``: its final state
    says what it did (:mod:`flows.transfer_run`), a caller gets the results."""
    return await run_transfer(UPLOAD, name, config, data_dir)
