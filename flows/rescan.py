"""The rescan flow: files already handed on, looked at again with newer signatures.

One run per batch of names (bounded like a scan run's: :func:`flows.scan.parameter_batches`),
one task per slice, the same verdict tables as a scan run, and a final state that says what the
look found: ``Quarantined`` when a file left ``clean/`` (or ``uploadarchive/``), ``Incomplete``
when some could not be scanned, else ``Completed``; the message counts them, the name leads
with what matters ("rescan 1 infected of 5000 for ClamAV 1.4.6/27481"), and the tags say the
instance, the accounts of the files that moved, and ``infected``.

Fresh uploads go first: the files are looked at one at a time, and before each the run waits
while the staging watcher has files due (:class:`RescanRuns` is given that test). The work
itself is :meth:`ssftp.scan.rescan.Rescanner.rescan`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from uuid import UUID

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.utilities.annotations import quote

from flows import stopping
from flows.artifacts import publish_quarantine_table
from flows.clamd_budget import Budgets, ClamdBudget, clamd_slot
from flows.events import scan_event
from flows.scan import (
    Results,
    from_parameter,
    origin,
    parameter_batches,
    publish_tables,
    results_of,
    slices,
    to_parameter,
)
from ssftp.logs import one_line
from ssftp.scan.rescan import RESCANNED, Rescanner
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.verdict import VerdictKind
from ssftp.scan.workers import worker_tag

# How often a rescan that gave way to fresh uploads looks whether they are done.
GIVE_WAY_SECONDS = 0.5


@dataclass(frozen=True)
class RescanSummary:
    """What a rescan run's final state, name and tags say."""

    looked: int
    moved: int  # left clean/ or uploadarchive/ for quarantine/
    detected: int  # in quarantine/ and still detected
    released: int  # in quarantine/ and no longer detected: for an operator to release
    unscanned: int  # could not be scanned this time (clamd, a read error, a limit)
    accounts: tuple[str, ...]  # of the files that moved

    @classmethod
    def of(cls, results: Iterable[ScanResult]) -> RescanSummary:
        results = list(results)
        moved = [r for r in results if not r.stays]
        in_quarantine = [r for r in results if r.stays and r.area is Area.QUARANTINE]
        return cls(
            looked=len(results), moved=len(moved),
            detected=sum(r.verdict is VerdictKind.INFECTED for r in in_quarantine),
            released=sum(r.verdict is VerdictKind.CLEAN for r in in_quarantine),
            unscanned=sum(r.verdict in (VerdictKind.ERROR, VerdictKind.UNSCANNABLE)
                          for r in results),
            accounts=tuple(sorted({r.account for r in moved if r.account})))

    def state_name(self) -> str:
        if self.moved:
            return "Quarantined"
        return "Incomplete" if self.unscanned else "Completed"

    def message(self) -> str:
        text = f"{self.looked} looked at, {self.moved} infected and quarantined"
        if self.detected or self.released:
            text += (f", {self.detected} still detected in quarantine, {self.released} no "
                     "longer detected")
        return f"{text}, {self.unscanned} not scanned"

    def run_name(self, signatures: str) -> str:
        head = (f"{self.moved} infected of {self.looked}" if self.moved
                else f"{self.looked} files")
        return f"rescan {head}{origin(self.accounts)} for {one_line(signatures)}"

    def tags(self, instance: str) -> list[str]:
        flags = ["infected"] if self.moved else []
        return [f"instance:{instance}", "rescan",
                *(f"account:{account}" for account in self.accounts), *flags]


def _line(result: ScanResult) -> str:
    return (f"{one_line(result.source)}: {result.verdict} ({one_line(result.detail)}) -> "
            f"{one_line(result.destination)}")


@task(name="rescan-files", cache_policy=NO_CACHE, task_run_name="rescan {label}")
async def rescan_files(rescanner: Rescanner, names: list[str], label: str,
                       flow_run_id: str | None, give_way: Callable[[], bool],
                       budget: ClamdBudget | None,
                       stop: stopping.Stop) -> tuple[list[ScanResult], int]:
    """Look at a slice, one file at a time up to the one in hand when ``stop`` is set, each
    after the fresh uploads due have had their turn (waited for here, on the loop, so a stop
    is never held up by a rescan giving way): the results, and how many files were not
    begun. A warning line per file that is not still clean, one entry for the rest.

    The files between two turns given away are looked at holding one slot of the clamd's
    budget (:mod:`flows.clamd_budget`): given back while the rescan gives way, so the fresh
    uploads it waits for can have it."""
    logger = get_run_logger()
    results, quiet, begun = [], 0, 0
    while begun < len(names) and not stop.is_set():
        while give_way() and not stop.is_set():
            await asyncio.sleep(GIVE_WAY_SECONDS)
        async with clamd_slot(budget, logger, stop.is_set) as may_scan:
            while may_scan and begun < len(names) and not stop.is_set() and not give_way():
                path = from_parameter(names[begun], rescanner.layout, RESCANNED)
                begun += 1
                result = await asyncio.to_thread(rescanner.rescan, path, flow_run_id)
                if result is None:
                    continue
                if result.event is not None:
                    scan_event(result.event, result, rescanner.instance).emit()
                if result.stays and result.verdict in (VerdictKind.CLEAN,
                                                       VerdictKind.UNSCANNED):
                    quiet += 1
                else:
                    logger.warning("%s", _line(result))
                results.append(result)
    if quiet:
        logger.info("%d file(s) still clean", quiet)
    return results, len(names) - begun


async def rescan_and_report(rescanner: Rescanner, names: list[str], signatures: str,
                            give_way: Callable[[], bool], stop: stopping.Stop,
                            budget: ClamdBudget | None) -> State[Results]:
    """The body of a rescan run: its slices one after the other (one scan at a time beside
    the fresh uploads' runs), its tables, its name and tags. A stop lets the file in hand
    finish, and the run still reports (:mod:`flows.stopping`); the next rescan starts
    again."""
    run_id = flow_run.id
    results: list[ScanResult] = []
    left = 0
    for part in slices(names, workers=1):
        if stop.is_set():  # no task run for a slice that would look at nothing
            left += len(part)
            continue
        label = f"{one_line(PurePosixPath(part[0]).name)} and {len(part) - 1} more"
        done, not_begun = await rescan_files(rescanner, part, label, run_id, give_way, budget,
                                             stop)
        results += done
        left += not_begun
    summary = RescanSummary.of(results)
    await publish_tables(results, summary.message())
    if summary.moved:
        await publish_quarantine_table(rescanner.layout, rescanner.instance)
    if run_id is not None:
        async with get_client() as client:
            flags = [stopping.INTERRUPTED_TAG] if left else []
            await client.update_flow_run(UUID(run_id), name=summary.run_name(signatures),
                                         tags=[*flow_run.tags, *summary.tags(rescanner.instance),
                                               *flags])
    if left:
        return stopping.interrupted(quote(results), f"interrupted by a stop after "
                                                    f"{len(names) - left} of {len(names)}: "
                                                    f"{summary.message()}")
    return Completed(name=summary.state_name(), message=summary.message(), data=quote(results))


class RescanRuns:
    """The rescan flow bound to this process's :class:`Rescanner` and its test of whether
    fresh uploads are waiting (built per instance, as :class:`flows.scan.ScanRuns` is)."""

    def __init__(self, rescanner: Rescanner, give_way: Callable[[], bool],
                 budgeted: Callable[[], bool] = lambda: True) -> None:
        self.rescanner = rescanner
        self.give_way = give_way
        self._stop = stopping.Stop()
        self._budgets = Budgets(budgeted)

        @flow(name="rescan", flow_run_name="rescan for {signatures}")
        async def rescan_batch(names: list[str], signatures: str) -> State[Results]:
            rescanner = self.rescanner
            return await stopping.shielded(rescan_and_report(
                rescanner, names, signatures, self.give_way, self._stop,
                self._budgets.of(rescanner.client)), self._stop)

        self._flow = rescan_batch

    def stop(self) -> None:
        """The process stops: a run under way finishes the file in hand and reports."""
        self._stop.set()

    async def rescan(self, paths: list[Path], signatures: str) -> list[ScanResult]:
        """Rescan runs for these files, one after the other (:func:`parameter_batches`).
        A stop cancels the caller, once the run under way has reported: the rest of the
        rescan is the next start's, and nothing may count this one done."""
        layout = self.rescanner.layout
        results: list[ScanResult] = []
        for names in parameter_batches([to_parameter(path, layout) for path in paths]):
            with tags(worker_tag(self.rescanner.worker)):
                state = await self._flow(names, signatures, return_state=True)
            stopping.pass_on_cancellation()
            if stopping.was_interrupted(state) or self._stop.is_set():
                raise asyncio.CancelledError
            results += await results_of(state)
        return results
