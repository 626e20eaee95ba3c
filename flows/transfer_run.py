"""What every download and upload run shares: finding its entry, retries, the per-host limit,
and the run's table. What differs between the two is a :class:`~client.kinds.TransferKind`.

A run reads ssftp.yaml itself (parameters carry only the entry's name and the paths), so a
secret never shows up in Prefect's parameters, and a run always uses the config as it is now.
Connection failures are retried with exponential backoff; a refused host key or login fails at
once. Files that failed make the run fail after the others were done. Runs of one entry never
overlap (``ssftp.run_lock``): a run that finds the previous one still going does nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from prefect import get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.objects import State, TaskRun
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

from client.kinds import Entry, TransferKind
from flows.artifacts import artifact_key
from flows.events import transfer_event
from ssftp.config.loader import load_config
from ssftp.config.schema import RemoteEndpoint, SsftpConfig
from ssftp.errors import ConfigError, RemoteUnavailableError, TransferError, TransferFailedError
from ssftp.layout import DataLayout
from ssftp.logs import AUDIT, configure_logging, one_line
from ssftp.retry_schedule import exponential_delays
from ssftp.run_lock import exclusive_run
from ssftp.scan.owners import StagingOwners
from ssftp.transfer.local import TransferResult


def host_limit_name(entry: RemoteEndpoint) -> str:
    """The Prefect concurrency limit that every transfer to this host:port shares."""
    return f"sftp-host-{entry.host}-{entry.port}"


async def ensure_host_limit(name: str, limit: int) -> None:
    """Create the limit, or set it to the configured value; idempotent."""
    async with get_client() as client:
        try:
            current = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit))
            return
        if current.limit != limit or not current.active:
            await client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=limit, active=True))


def _retry_when_unavailable(_task: object, _run: TaskRun, state: State) -> bool:
    """Only connection failures are worth another attempt."""
    return isinstance(state.data, RemoteUnavailableError)


@task(name="transfer", cache_policy=NO_CACHE,
      task_run_name="{kind.name} {entry.name} with {entry.host}:{entry.port}")
async def transfer_files(kind: TransferKind[Entry], entry: Entry, layout: DataLayout,
                         timeout: float, host_limit: str) -> list[TransferResult]:
    run_id = str(flow_run.id) if flow_run.id else None
    async with concurrency(host_limit, occupy=1, strict=True):
        return await kind.run(entry, layout, timeout, run_id)


async def run_transfer(kind: TransferKind[Entry], name: str, config: str,
                       data_dir: str) -> list[TransferResult]:
    logger = get_run_logger()
    try:
        loaded = load_config(Path(config))
    except ConfigError as exc:
        raise TransferError(f"{config} is not a valid ssftp.yaml: "
                            + "; ".join(issue.describe(exc.source) for issue in exc.issues)
                            ) from None
    settings = loaded.config
    entry = kind.find(settings, name, config)
    if not kind.enabled(settings):
        logger.warning("%s is false in %s: nothing transferred", kind.switch, config)
        return []
    layout = DataLayout.at(data_dir).create()
    if not logging.getLogger(AUDIT).handlers:
        # A run started by a Prefect runner or worker in its own process: write the audit
        # log where the rest of this instance writes it.
        configure_logging(settings.log_dirs(layout), stdout=False)
    limits = settings.transfers
    host_limit = host_limit_name(entry)
    await ensure_host_limit(host_limit, limits.max_connections_per_host)
    with exclusive_run(layout.system, kind.name, name) as mine:
        if not mine:
            logger.warning("the previous %s run of %s is still going: this run does nothing",
                           kind.name, name)
            return []
        results = await transfer_files.with_options(
            retries=limits.retries,
            retry_delay_seconds=exponential_delays(limits.retry_delay_seconds, limits.retries),
            retry_condition_fn=_retry_when_unavailable,
        )(kind, entry, layout, limits.connect_timeout_seconds, host_limit)
    await _report(kind, entry, results)
    _announce_moved(kind, settings, entry, results)
    failed = [result for result in results if result.outcome == "failed"]
    if failed:
        first = failed[0]
        raise TransferFailedError(f"{len(failed)} of {len(results)} file(s) failed; first: "
                                  f"{first.file}: {first.detail}")
    return results


def _announce_moved(kind: TransferKind[Entry], settings: SsftpConfig,
                    entry: Entry, results: list[TransferResult]) -> None:
    """One Prefect event per file moved (``ssftp.file.downloaded`` / ``uploaded``), keyed by
    the sha256 the transfer took of its local copy."""
    owners = StagingOwners(settings)
    run_id = str(flow_run.id) if flow_run.id else None
    for result in results:
        if result.outcome != kind.done:
            continue
        path = kind.local_name(entry, result.file)
        transfer_event(result, path=path, account=owners.owner_of(PurePosixPath(path)),
                       instance=settings.instance_name, flow_run_id=run_id,
                       entry=(kind.role, entry.name)).emit()


async def _report(kind: TransferKind[Entry], entry: Entry,
                  results: list[TransferResult]) -> None:
    logger = get_run_logger()
    counts = {outcome: sum(1 for r in results if r.outcome == outcome)
              for outcome in (kind.done, "skipped", "failed")}
    logger.info("%s %s with %s:%d: %s", kind.name, entry.name, entry.host, entry.port,
                ", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
    for result in results:
        if result.outcome == "failed":
            logger.error("%s: %s", one_line(result.file), one_line(result.detail))
    await acreate_table_artifact(
        key=artifact_key(kind.name, entry.name),
        table=[{"file": one_line(r.file), "bytes": r.bytes, "result": r.outcome,
                "detail": one_line(r.detail)}
               for r in results] or [{"file": "", "bytes": 0, "result": "nothing to do",
                                      "detail": ""}],
        description=f"{kind.name} {entry.name} with {entry.host}:{entry.port}")
