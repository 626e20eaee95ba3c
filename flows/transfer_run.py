"""What every download and upload run shares: finding its entry, retries, the per-host limit,
and the run's table. What differs between the two is a :class:`~client.kinds.TransferKind`.

A run reads ssftp.yaml itself (parameters carry only the entry's name and the paths), so a
secret never shows up in Prefect's parameters, and a run always uses the config as it is now.
Connection failures are retried with exponential backoff; a refused host key or login fails at
once. Files that failed make the run fail after the others were done. Runs of one entry never
overlap (``ssftp.run_lock``): a run that finds the previous one still going does nothing.

What a run did is in the run itself, in the words of the scan runs: tags ``instance:<name>`` and
``downloader:<entry>`` / ``uploader:<entry>`` (set as the run starts, so a run that fails to
connect has them too), the counts as the final state's message ("2 downloaded, 1 skipped"),
and a state named ``Downloaded`` / ``Uploaded`` when files moved.

A run that moved nothing and failed nothing ends ``Idle`` (Completed-type, tag ``idle``) and
deletes the older idle runs of its entry. An entry on a 60 s interval makes 1 440 runs a day,
nearly all of them idle: kept, they would bury the scan runs and the transfers that did
something. Deleting them keeps what an operator needs from them: the latest idle run says
when the entry last looked, and every run that moved or failed something stays.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, State, StateType, TaskRun
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Completed

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


IDLE_STATE = "Idle"
IDLE_TAG = "idle"
# Older idle runs one run deletes at most; more (none, as each idle run deletes the one
# before) go with the next idle runs.
IDLE_RUNS_DELETED = 200


def entry_tags(kind: TransferKind[Entry], instance: str, name: str) -> list[str]:
    """The tags of every run of an entry: ``instance:<name>``, ``downloader:<entry>``."""
    return [f"instance:{instance}", f"{kind.role}:{name}"]


def is_idle(kind: TransferKind[Entry], results: Sequence[TransferResult]) -> bool:
    """Nothing moved and nothing failed (skipped files do not count: they are skipped again
    on every tick)."""
    return not any(result.outcome in (kind.done, "failed") for result in results)


def counts_message(kind: TransferKind[Entry], results: Sequence[TransferResult]) -> str:
    """"2 downloaded, 1 skipped": the outcomes that happened, or "nothing to download"."""
    counts = [(sum(1 for r in results if r.outcome == outcome), outcome)
              for outcome in (kind.done, "failed", "skipped")]
    return ", ".join(f"{count} {outcome}" for count, outcome in counts if count) or (
        f"nothing to {kind.name}")


def final_state(kind: TransferKind[Entry], results: list[TransferResult],
                message: str | None = None) -> State[list[TransferResult]]:
    """``Downloaded`` / ``Uploaded`` when files moved, else ``Idle``; both Completed-type, the
    counts (or ``message``) as the message. The results stay the run's data for a caller."""
    name = IDLE_STATE if is_idle(kind, results) else kind.done.capitalize()
    return Completed(name=name, message=message or counts_message(kind, results), data=results)


def older_idle_runs(runs: Sequence[FlowRun], own: UUID, tags: Sequence[str]) -> list[FlowRun]:
    """The runs an idle run may delete: other runs of its entry (all of ``tags`` and
    ``idle``) that ended Completed and ``Idle``. Checked here again whatever the server's filter
    returned: a run that moved or failed something, or one still going, is never deleted."""
    wanted = {*tags, IDLE_TAG}
    return [run for run in runs
            if run.id != own and wanted <= set(run.tags) and run.state is not None
            and run.state.type is StateType.COMPLETED and run.state.name == IDLE_STATE]


async def _tag_run(tags: list[str]) -> None:
    """Add ``tags`` to this run (a run only knows its entry once it runs)."""
    run_id = flow_run.id
    if run_id is None:
        return
    async with get_client() as client:
        await client.update_flow_run(UUID(run_id),
                                     tags=[*flow_run.tags, *(t for t in tags
                                                             if t not in flow_run.tags)])


async def _delete_older_idle_runs(kind: TransferKind[Entry], tags: list[str]) -> None:
    """Tag this run ``idle`` and delete the older idle runs of its entry: the latest idle run
    alone says when the entry last looked."""
    run_id = flow_run.id
    if run_id is None:
        return
    await _tag_run([*tags, IDLE_TAG])
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[kind.name])),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(not_any_=[UUID(run_id)]),
                tags=FlowRunFilterTags(all_=[*tags, IDLE_TAG]),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.COMPLETED]),
                    name=FlowRunFilterStateName(any_=[IDLE_STATE]))),
            limit=IDLE_RUNS_DELETED)
        for run in older_idle_runs(runs, UUID(run_id), tags):
            with contextlib.suppress(ObjectNotFound):  # deleted by a run beside
                await client.delete_flow_run(run.id)


async def run_transfer(kind: TransferKind[Entry], name: str, config: str,
                       data_dir: str) -> State[list[TransferResult]]:
    logger = get_run_logger()
    try:
        loaded = load_config(Path(config))
    except ConfigError as exc:
        raise TransferError(f"{config} is not a valid ssftp.yaml: "
                            + "; ".join(issue.describe(exc.source) for issue in exc.issues)
                            ) from None
    settings = loaded.config
    entry = kind.find(settings, name, config)
    tags = entry_tags(kind, settings.instance_name, name)
    await _tag_run(tags)
    if not kind.enabled(settings):
        logger.warning("%s is false in %s: nothing transferred", kind.switch, config)
        return Completed(message=f"{kind.switch} is false: nothing transferred", data=[])
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
            # Only a run started by hand, or by another process (a work pool's worker),
            # gets here: ssftp's own runner skips the ticks of a busy entry.
            busy = f"the previous {kind.name} run of {name} is still going: nothing done"
            logger.info("%s", busy)
            await _delete_older_idle_runs(kind, tags)
            return final_state(kind, [], busy)
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
    if is_idle(kind, results):
        await _delete_older_idle_runs(kind, tags)
    return final_state(kind, results)


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
