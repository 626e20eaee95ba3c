"""The scan flow: one run per batch of completed staged files, one task per slice of the batch.

A run's verdict tables (artifacts) and its logs show every file, so a thousand small files
cost one flow run and a few task runs, not a thousand runs. The work itself is
:meth:`ssftp.scan.scanner.Scanner.scan`; this module only spreads it over threads and reports.

A run's parameters are the files' names in the data root (``staging/acme/x.csv``), as every
other surface names them: a Prefect UI user learns nothing of the host's directories. What one
run receives is bounded (:data:`MAX_PARAMETER_BYTES`): a batch whose names would pass the
Prefect server's limit is scanned in several runs, one after the other, so no name however long
can get a batch refused.

What a run found is in the run itself, so an operator sees every infection in the runs list:
its final state is named ``Quarantined``, ``Retrying`` or ``Completed`` (with the counts as
its message), its name leads with what matters ("scan 2 infected of 50 from acme"), and its
tags say the instance, the worker (from the run's start), the accounts and ``infected`` /
``unscannable`` / ``blocked`` / ``waiting``.

A stop (Ctrl-C, SIGTERM) ends a run with what it did (:mod:`flows.stopping`): each slice
finishes the file in hand and scans no more, the files not begun stay in staging for the next
start, and the run reports those it scanned (tables, name, tags, the quarantine table) in a
state named ``Interrupted``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.exceptions import MissingResult
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.utilities.annotations import quote

from flows.artifacts import publish_quarantine_table
from flows.clamd_budget import Budgets, ClamdBudget, clamd_slot
from flows.events import is_told, scan_event
from flows.parameters import decode_name, encode_name
from flows.stopping import (
    INTERRUPTED_TAG,
    Stop,
    interrupted,
    pass_on_cancellation,
    shielded,
    was_interrupted,
)
from ssftp.errors import InvalidValueError, RunResultsLostError
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event, one_line
from ssftp.scan.queue import Lane
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.scanner import Scanner
from ssftp.scan.verdict import VerdictKind
from ssftp.scan.workers import worker_tag

app_log = logging.getLogger(APP)

# Scans in flight at once in a run of small files; clamd.conf gives clamd four threads too.
SCAN_THREADS = 4
# A run of large files scans one at a time: each is bound by the disk and a core to hash
# it, and the threads left (asyncio's default pool has cores + 4) stay for the small files'
# run beside it.
LANE_THREADS = {Lane.SMALL: SCAN_THREADS, Lane.LARGE: 1}
# Files per task: small enough that the UI shows progress, large enough that task overhead
# (~5 ms each) stays small next to scanning.
MAX_FILES_PER_TASK = 50
# What one run's parameters may take, as Prefect measures them (compact JSON, ASCII-escaped):
# half the server's default limit (``server.api.max_parameter_size``, 512 KiB), which refuses
# the run (422) otherwise. A name is at most 4096 bytes, 24 KiB escaped, so every name fits.
MAX_PARAMETER_BYTES = 256 * 1024

# Every row in full (the whole sha256): for scripts and the API; the audit log has it too.
VERDICT_TABLE_KEY = "scan-verdicts"
# The table to read in the UI: the account first and the hash shortened, so signature and
# destination fit on the screen.
SUMMARY_TABLE_KEY = "scan-summary"
SHORT_SHA256 = 12
_DOWNLOADER_PREFIX = "downloader:"
# Accounts a run name spells out; more are counted.
_NAMED_ACCOUNTS = 2
# Quarantined files a run name spells out (more are counted), and how much of each name.
_NAMED_FILES = 2
_NAME_CHARACTERS = 60


def slices(paths: list[str], workers: int = SCAN_THREADS,
           most: int = MAX_FILES_PER_TASK) -> list[list[str]]:
    """Split a batch evenly over the workers, at most ``most`` files per slice."""
    if not paths:
        return []
    size = max(1, min(most, math.ceil(len(paths) / workers)))
    return [paths[start:start + size] for start in range(0, len(paths), size)]


def verdict_row(result: ScanResult) -> dict[str, object]:
    return {"file": one_line(result.file), "account": one_line(result.account or ""),
            "size": result.size, "sha256": result.sha256, "verdict": result.verdict_label,
            "signature": result.signature or "", "destination": one_line(result.destination),
            "detail": one_line(result.detail), "engine": result.engine or "",
            "database": result.database or "", "engines": engines_cell(result)}


def engines_cell(result: ScanResult) -> str:
    """Each engine's answer when several judged: ``clamd: OK; icap: Threat=...``."""
    return "; ".join(f"{name}: {one_line(answer)}"
                     for name, answer in (result.engines or {}).items())


def summary_row(result: ScanResult) -> dict[str, object]:
    """A verdict row narrowed for the screen: who and what first, the hash's first 12 hex
    (enough to tell files apart; the full value is in the verdict table and the audit log)."""
    return {"account": one_line(result.account or ""), "file": one_line(result.file),
            "verdict": result.verdict_label, "signature": result.signature or "",
            "destination": one_line(result.destination),
            "sha256": (result.sha256 or "")[:SHORT_SHA256], "size": result.size,
            "detail": one_line(result.detail), "database": result.database or ""}


@dataclass(frozen=True)
class RunSummary:
    """What a scan run's final state, name and tags say: the counts and the accounts."""

    clean: int
    infected: int
    unscannable: int
    blocked: int
    waiting: int
    accounts: tuple[str, ...]
    # The first quarantined files (one more than a name spells out): (file, verdict).
    quarantined: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, results: Iterable[ScanResult]) -> RunSummary:
        results = list(results)
        quarantined = [(r.file, r.verdict.value) for r in results if r.area is Area.QUARANTINE]
        return cls(clean=sum(r.area is Area.CLEAN for r in results),
                   infected=sum(r.verdict is VerdictKind.INFECTED for r in results),
                   unscannable=sum(r.verdict is VerdictKind.UNSCANNABLE for r in results),
                   blocked=sum(r.verdict is VerdictKind.BLOCKED for r in results),
                   waiting=sum(r.area is Area.STAGING for r in results),
                   accounts=tuple(sorted({r.account for r in results if r.account})),
                   quarantined=tuple(quarantined[:_NAMED_FILES + 1]))

    @property
    def files(self) -> int:
        return self.clean + self.infected + self.unscannable + self.blocked + self.waiting

    def state_name(self) -> str:
        """``Quarantined`` wins over ``Retrying``: an infection is what the operator must not
        miss, and the ``waiting`` tag and the message still show the files left to retry."""
        if self.infected or self.unscannable or self.blocked:
            return "Quarantined"
        return "Retrying" if self.waiting else "Completed"

    def _counts(self) -> list[str]:
        """The outcomes that happened, the worst first (``verdict.worst``'s order)."""
        return [f"{count} {what}" for count, what in ((self.infected, "infected"),
                                                      (self.blocked, "blocked"),
                                                      (self.unscannable, "unscannable"),
                                                      (self.waiting, "waiting"),
                                                      (self.clean, "clean")) if count]

    def message(self) -> str:
        """"1 infected, 49 clean": the worst first, as the state's message is what the runs
        list shows beside the state."""
        return ", ".join(self._counts()) or "nothing scanned"

    def run_name(self) -> str:
        """The quarantined files by name when there are few ("scan partner1/eicar.com
        infected, 1 clean"), else the counts of what needs a look, of the batch, and where it
        came from ("scan 2 infected of 50 from acme"; "scan 50 clean from acme")."""
        if not self.files:
            return "scan nothing"
        if 0 < len(self.quarantined) <= _NAMED_FILES:
            named = [f"{_shortened(one_line(file))} {verdict}"
                     for file, verdict in self.quarantined]
            rest = [f"{count} {what}" for count, what in ((self.waiting, "waiting"),
                                                          (self.clean, "clean")) if count]
            return f"scan {', '.join(named + rest)}"
        notable = self._counts()[:-1] if self.clean else self._counts()
        head = (f"{', '.join(notable)} of {self.files}" if notable
                else f"{self.clean} clean")
        return f"scan {head}{origin(self.accounts)}"

    def tags(self, instance: str) -> list[str]:
        """Tags to filter runs by in the UI: the instance, each account (a downloader is
        already named ``downloader:<name>``), and what needs a look."""
        accounts = [account if account.startswith(_DOWNLOADER_PREFIX) else f"account:{account}"
                    for account in self.accounts]
        flags = [flag for flag, count in (("infected", self.infected),
                                          ("unscannable", self.unscannable),
                                          ("blocked", self.blocked),
                                          ("waiting", self.waiting)) if count]
        return [f"instance:{instance}", *accounts, *flags]

    def final_state(self, results: list[ScanResult]) -> State[Results]:
        """Completed-type whatever the outcome: every file was dealt with (moved on, or back in
        staging for the watcher to retry with its own backoff). A Failed-type state would
        make the watcher retry the whole batch (``StagingQueue.run_failed``) and would count
        a clamd outage as a broken run. The results stay the run's data for the caller."""
        return Completed(name=self.state_name(), message=self.message(), data=quote(results))

    def interrupted_state(self, results: list[ScanResult], batch: int,
                          left: int) -> State[Results]:
        """The state of a run a stop cut short; the message says how far it got."""
        return interrupted(quote(results), f"interrupted by a stop after {batch - left} of "
                                           f"{batch}: {self.message()}; {left} left in staging")


# A run's results, as its final state carries them: quoted, so that Prefect does not walk
# them. Its engine looks through a run's return value for futures to resolve, field by field
# of every result: 18% of the scan worker's event loop in a 1000-file pipeline (py-spy).
Results = quote  # of list[ScanResult]


async def results_of(state: State[Any]) -> list[ScanResult]:
    """The results a scan or rescan run's final state carries (typed as what the flow
    returns, a state: Prefect hands it back as the final state)."""
    try:
        return cast(Results, await state.aresult()).unquote()
    except MissingResult as exc:
        raise RunResultsLostError(f"the results of a run that ended {state.type.value} "
                                  f"cannot be read back: {one_line(str(exc))}") from None


def _shortened(name: str) -> str:
    """A file's name for a run's name: its end when it is long (the end names the file)."""
    return name if len(name) <= _NAME_CHARACTERS else f"...{name[-(_NAME_CHARACTERS - 3):]}"


def origin(accounts: tuple[str, ...]) -> str:
    """Where a run's files came from, for its name: " from acme, beta and 3 more" (or "")."""
    if not accounts:
        return ""
    named = ", ".join(one_line(account) for account in accounts[:_NAMED_ACCOUNTS])
    rest = len(accounts) - _NAMED_ACCOUNTS
    return f" from {named}" + (f" and {rest} more" if rest > 0 else "")


async def publish_tables(results: list[ScanResult], message: str) -> None:
    """A run's two verdict tables: the summary to read, and every row in full."""
    await acreate_table_artifact(table=[summary_row(result) for result in results],
                                 key=SUMMARY_TABLE_KEY, description=message)
    await acreate_table_artifact(table=[verdict_row(result) for result in results],
                                 key=VERDICT_TABLE_KEY,
                                 description=f"{message} (every row in full)")


def to_parameter(path: Path, layout: DataLayout) -> str:
    """A file as a run parameter: its name in the data root (:mod:`flows.parameters`)."""
    return encode_name(path.relative_to(layout.root).as_posix())


def from_parameter(value: str, layout: DataLayout,
                   areas: Collection[Area | str] = ("staging",)) -> Path:
    """The file a parameter names; only a name below one of ``areas`` (a scan's: staging/)
    is one."""
    parts = PurePosixPath(decode_name(value)).parts
    if len(parts) < 2 or parts[0] not in areas or ".." in parts:
        raise InvalidValueError(f"not the name of a file in {'/, '.join(map(str, areas))}/: "
                                f"{one_line(value)!r}")
    return layout.root.joinpath(*parts)


def parameter_batches(names: list[str], most: int = MAX_PARAMETER_BYTES) -> list[list[str]]:
    """``names`` in runs whose parameters take at most ``most`` bytes, in their order."""
    batches: list[list[str]] = []
    size = most
    for name in names:
        cost = len(json.dumps(name)) + 1  # and a comma
        if size + cost > most:
            batches.append([])
            size = 0
        batches[-1].append(name)
        size += cost
    return batches


def _scan_slice(scanner: Scanner, paths: list[str], flow_run_id: str | None,
                logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
                stop: Stop, clean_events: bool) -> tuple[list[ScanResult], int]:
    """Scan a slice, up to the file in hand when ``stop`` is set: the results, and how many
    files were not begun. The run's log gets one line per file, and Prefect the event of each
    outcome that raises one (:mod:`flows.events`; a clean file's only with ``clean_events``),
    sent as it is found, for an Automation to react to.

    Clean files share one log entry per slice (a line each): a Prefect log call per file cost
    as much as the scan itself. Anything not clean gets a warning entry of its own.
    """
    results, lines, begun = [], [], 0
    for path in paths:
        if stop.is_set():
            break
        begun += 1
        result = scanner.scan(from_parameter(path, scanner.layout), flow_run_id)
        if result is None:
            lines.append(f"{one_line(decode_name(path))}: gone before it could be scanned")
            continue
        if result.event is not None and is_told(result.event, clean_events):
            scan_event(result.event, result, scanner.instance).emit()
        line = (f"{one_line(result.file)}: {result.verdict} ({one_line(result.detail)}) -> "
                f"{one_line(result.destination)}")
        if result.area is Area.CLEAN:
            lines.append(line)
        else:
            logger.warning("%s", line)
        results.append(result)
    if lines:
        logger.info("%s", "\n".join(lines))
    return results, len(paths) - begun


@task(name="scan-files", cache_policy=NO_CACHE,
      task_run_name="scan {label}")
async def scan_files(scanner: Scanner, paths: list[str], label: str,
                     flow_run_id: str | None, stop: Stop,
                     clean_events: bool) -> tuple[list[ScanResult], int]:
    # Scanning blocks (file reads, clamd sockets): a thread keeps the event loop, which may
    # also be serving SFTP clients, free.
    return await asyncio.to_thread(_scan_slice, scanner, paths, flow_run_id,
                                   get_run_logger(), stop, clean_events)


Slices = deque[tuple[int, list[str]]]


async def _scan_lane(scanner: Scanner, waiting: Slices, run_id: str | None,
                     budget: ClamdBudget | None, stop: Stop, clean_events: bool,
                     done: dict[int, tuple[list[ScanResult], int]]) -> None:
    """One of a run's lanes (:data:`LANE_THREADS`): the slices still waiting, one after the
    other, holding one slot of the clamd's budget (:mod:`flows.clamd_budget`) for them all.
    Taken per lane, not per slice: taking and giving back a slot costs a few Prefect API
    calls. A lane still waiting for a slot when the others have taken every slice gives up."""
    async with clamd_slot(budget, get_run_logger(),
                          lambda: stop.is_set() or not waiting) as may_scan:
        while may_scan and waiting and not stop.is_set():
            index, part = waiting.popleft()
            done[index] = await scan_files(scanner, part, _label(part), run_id, stop,
                                           clean_events)


def _label(paths: list[str]) -> str:
    first = one_line(PurePosixPath(decode_name(paths[0])).name) if paths else "nothing"
    return first + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")


def _run_name() -> str:
    """The name a run starts with, before it knows what it will find (``scanning x.csv and 49
    more``): its first log lines carry it, so it says what the run began to do, not what it
    found; :func:`_label_run` renames the run once it knows."""
    return f"scanning {_label(flow_run.parameters.get('paths', []))}"


async def _label_run(run_id: str, summary: RunSummary, instance: str,
                     interrupted: bool) -> None:
    """Name and tag the run after what it found: known only now, so set in one API call."""
    flags = [INTERRUPTED_TAG] if interrupted else []
    async with get_client() as client:
        await client.update_flow_run(UUID(run_id), name=summary.run_name(),
                                     tags=[*flow_run.tags, *summary.tags(instance), *flags])


async def scan_and_report(scanner: Scanner, paths: list[str], lane: Lane,
                          stop: Stop, clean_events: bool,
                          budget: ClamdBudget | None) -> State[Results]:
    """The body of a scan run: scan the batch in slices, over the lane's threads, publish its
    verdict tables, name and tag the run; its final state carries the results. Each slice
    moves its files on as it scans them: a slow file holds up only the files after it in its
    own slice. A stop lets each slice finish the file in hand, starts no other, and the run
    still reports (:mod:`flows.stopping`)."""
    run_id = flow_run.id
    threads = LANE_THREADS[lane]
    parts = slices(paths, threads)
    waiting: Slices = deque(enumerate(parts))
    done: dict[int, tuple[list[ScanResult], int]] = {}
    await asyncio.gather(*(_scan_lane(scanner, waiting, run_id, budget, stop, clean_events,
                                      done)
                           for _ in range(min(threads, len(parts)))))
    results = [result for index in sorted(done) for result in done[index][0]]
    # Not begun: the files a stop left in the slices under way, and the slices not started.
    left = len(paths) - sum(len(parts[index]) - not_begun
                            for index, (_, not_begun) in done.items())
    summary = RunSummary.of(results)
    await publish_tables(results, summary.message())
    if summary.quarantined:
        await publish_quarantine_table(scanner.layout, scanner.instance)
    if summary.waiting:
        get_run_logger().warning("%d file(s) could not be scanned and will be retried",
                                 summary.waiting)
    if run_id is not None:
        await _label_run(run_id, summary, scanner.instance, interrupted=left > 0)
    if left:
        return summary.interrupted_state(results, len(paths), left)
    return summary.final_state(results)


class ScanRuns:
    """The scan flow bound to this process's :class:`Scanner`, which stays out of the run's
    parameters. The scanner is swapped when the config is reloaded; a run in progress keeps
    the one it started with.

    The flow is built per instance: Prefect's flows-as-methods share one bound ``self``
    between instances (prefect 3.8.8 binds it on the shared function), so two workers in one
    process would scan with each other's scanner.
    """

    def __init__(self, scanner: Scanner,
                 clean_events: Callable[[], bool] = lambda: True,
                 budgeted: Callable[[], bool] = lambda: True) -> None:
        self.scanner = scanner
        self._stop = Stop()
        # Whether clean files are events (flows.events.clean_events_on), asked per run.
        self._clean_events = clean_events
        # Whether the scans take slots of the clamd's budget (flows.clamd_budget.budget_on).
        self._budgets = Budgets(budgeted)

        @flow(name="scan", flow_run_name=_run_name)
        async def scan_batch(paths: list[str], lane: Lane) -> State[Results]:
            scanner = self.scanner
            return await shielded(scan_and_report(scanner, paths, lane, self._stop,
                                                  self._clean_events(),
                                                  self._budgets.of(scanner.client)),
                                  self._stop)

        self._flow = scan_batch

    def stop(self) -> None:
        """The process stops: runs under way finish the file in hand and report; no more
        start."""
        self._stop.set()

    async def warm_up(self) -> None:
        """Do before the first upload what a process's first run would do on its way: load
        the engines, FastAPI's encoder and the validating model of the parameters (in a
        thread: imports, pydantic), register
        the flow with the Prefect server, which also wakes the server's side, and set up the
        clamd's budget (:mod:`flows.clamd_budget`). Only a head start: a server that does not
        answer now is the first run's to report.

        Not a throwaway run as well, though one took off the first run's 0.6 s of first-time
        costs: the writes the server makes from its events after the run has ended (its task
        run, its states) met the first upload's run in the server's SQLite, and that run then
        waited out Prefect's 2 s retry (2.2-2.6 s from close to clean/ in 3 of 6 starts,
        against 0.66 s without it). Nor Prefect's log and event workers started ahead, for the
        same reason: their first sends then fell within the first run (2.0-2.6 s in 4 of 15
        starts; 0.3-0.7 s otherwise, against 0.4-0.8 s without them, on a busy machine)."""
        await asyncio.to_thread(self._load_engines)
        try:
            async with get_client() as client:
                await client.create_flow(self._flow)
        except Exception as exc:  # whatever the client raises; the runs will say it again
            log_event(app_log, "scan flow not registered ahead of the first run",
                      logging.WARNING, error=one_line(str(exc)))
        if (budget := self._budgets.of(self.scanner.client)) is not None:
            await budget.ensure_or_warn(app_log)
        elif not self._budgets.on():
            log_event(app_log, "clamd budget off: the Prefect server is ssftp up's own, on "
                      "SQLite, where this worker scans alone; clamav.maxConcurrentScans "
                      "switches it on")

    def _load_engines(self) -> None:
        import prefect.flow_engine
        import prefect.task_engine
        import prefect.utilities.visualization  # noqa: F401  (each call of a flow imports it)

        parameters: dict[str, Any] = {"paths": [], "lane": Lane.SMALL}
        self._flow.serialize_parameters(parameters)
        self._flow.validate_parameters(parameters)  # builds its pydantic model, once

    async def scan_batch(self, paths: list[Path], lane: Lane = Lane.SMALL) -> list[ScanResult]:
        """One scan run for these staged (or claimed) files, or one after the other when
        their names are too long for one (:func:`parameter_batches`).

        The run ends in the state its body returns, whose data are the results (hence the
        cast). After a stop, the files not scanned are left for the next start."""
        layout = self.scanner.layout
        results: list[ScanResult] = []
        for names in parameter_batches([to_parameter(path, layout) for path in paths]):
            if self._stop.is_set():
                break
            # From the run's start: a run under way can be found by its worker in the UI.
            with tags(worker_tag(self.scanner.worker)):
                state = await self._flow(names, lane, return_state=True)
            pass_on_cancellation()
            if was_interrupted(state):
                break
            results += await results_of(state)
        return results
