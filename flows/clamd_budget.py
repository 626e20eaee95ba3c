"""One clamd budget for every worker: the scans draw slots from a Prefect global concurrency
limit, ``ssftp-clamd-<address>``, whose slots are the scans the clamd takes at once.

Each worker bounds its own scans (a run's lanes, :data:`flows.scan.LANE_THREADS`), but four
workers with four scan threads each would put sixteen scans on a clamd with ``MaxThreads 4``:
the extra ones queue inside clamd, where their wait counts against the scan timeout. The limit
is Prefect's own (leases, renewed while held and expired when a worker dies; the UI's
Concurrency page shows its slots in use), not a lock of ours, so any number of workers on one
Prefect server share it.

- Its slots: ``clamav.maxConcurrentScans`` when set, else the clamd's ``MaxThreads`` as its
  ``STATS`` tells (:meth:`ssftp.scan.clamd.ClamdClient.scan_slots`). It is created when absent
  (:data:`UNKNOWN_THREADS` per clamd while the clamd cannot say), and its slots are set
  again when they changed (the config, or the clamd's), at a worker's start and at a reload.
- A pool of clamds has one limit, named after all of its addresses, whose slots are the sum
  of its daemons' threads: the pool spreads each scan round-robin inside one slice, so a slot
  taken per daemon would have to be taken per file.
- A slot is taken per lane of a run (one of the threads that scan its slices, one file after
  the other), held while the lane has slices to scan, not per file or per slice: taking and
  giving one back costs two Prefect API calls (measured 5 ms each, and 2 s now and then when
  the server's SQLite makes a writer wait), where a small file's scan takes about a
  millisecond. A rescan holds one between the turns it gives to fresh uploads.
- A lane that finds the slots taken says so in its run's log ("waiting for a clamd slot: 4
  of 4 in use") and asks again as Prefect's answer advises, at most every
  :data:`ASK_AGAIN_SECONDS`, so a stop (or the other lanes having scanned everything) is
  seen while it waits.
- When the Prefect API cannot be reached for the limit, the lane scans without it (bounded by
  its worker's own lanes) and says so: the budget keeps clamd from being overloaded, it does
  not decide verdicts. An overloaded clamd answers late or times out, and a timeout is an
  error (the file is scanned again), never clean.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeGuard
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from ssftp.addresses import ClamdAddress
from ssftp.logs import APP, log_event, one_line
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.engines import Engine, engines_in
from ssftp.scan.pool import ClamdPool
from ssftp.scan.queue import PrefectDatabase

app_log = logging.getLogger(APP)

LIMIT_PREFIX = "ssftp-clamd-"
# The threads taken for a clamd that cannot say how many it has, when its limit is created:
# the clamd of `ssftp up` has 4 (ssftp/clamav/clamd.conf), as many as a run's lane scans.
UNKNOWN_THREADS = 4
# The longest a lane waiting for a slot waits before it asks again (and looks for a stop).
ASK_AGAIN_SECONDS = 1.0
# How long a slot outlives a worker that died holding it: Prefect's shortest lease; a live
# holder renews it when this part of it has passed (as Prefect's own holders do).
LEASE_SECONDS = 60.0
RENEW_AT = 0.75
# What a limit's name may hold of an address: Prefect refuses / % & > < in a name, and the
# client puts the name in a URL path unquoted.
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
ClamdEngine = ClamdClient | ClamdPool

# A process asks for (and gives back) the slots of a limit one at a time, as Prefect's own
# acquisition service does: writers at the same moment make a Prefect server on SQLite turn
# them away, and its client waits 2 s before it asks again. One lock per limit and loop.
_turns: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}


def _turn(name: str) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    mine = _turns.get(name)
    if mine is None or mine[0] is not loop:
        mine = _turns[name] = (loop, asyncio.Lock())
    return mine[1]


def budget_on(max_scans: int | None, database: PrefectDatabase | None) -> bool:
    """Whether the scans take slots: when ``clamav.maxConcurrentScans`` asks for it, and
    otherwise unless the Prefect server is the one ``ssftp up`` started on SQLite (None: a
    server this process did not start, whose database it cannot learn). There one worker
    scans alone (several take PostgreSQL: :func:`ssftp.scan.queue.runs_at_once`), and every
    slot taken is two more writes for a database that turns concurrent writers away (each
    refusal a 2 s wait of Prefect's client): a 1000-file upload took 40% longer to be in
    clean/ with them (bench/, 2 rounds of 3 each)."""
    return max_scans is not None or database is not PrefectDatabase.SQLITE


def limit_name(addresses: Sequence[ClamdAddress]) -> str:
    """``ssftp-clamd-clamd:3310``; a socket path with its slashes as dashes
    (``ssftp-clamd-run-clamav-clamd.ctl``); a pool's addresses sorted, comma-separated. Two
    addresses that read the same here share a budget: the safe side."""
    return LIMIT_PREFIX + ",".join(sorted(_safe(address) for address in addresses))


def _safe(address: ClamdAddress) -> str:
    text = address.unix_path or f"{address.host}:{address.port}"
    return _UNSAFE.sub("-", text).strip("-") or "-"


def clamd_of(engine: Engine | None) -> ClamdEngine | None:
    """The clamd (or pool) among the engines a scan uses; None with scanning off or ICAP
    alone (an ICAP server is not budgeted)."""
    for each in engines_in(engine):
        if isinstance(each, ClamdClient | ClamdPool):
            return each
    return None


def addresses_of(clamd: ClamdEngine) -> list[ClamdAddress]:
    clients = clamd.clients if isinstance(clamd, ClamdPool) else (clamd,)
    return [client.address for client in clients]


def slots_to_set(told: int | None, existing: int | None, clamds: int) -> int | None:
    """The slots to give the limit: what ``told`` (configured, or the clamd's threads), when
    it differs from the ``existing`` limit's (None: there is none); for a limit to create
    while nothing is told, :data:`UNKNOWN_THREADS` per clamd. None: leave it as it is (a
    clamd that cannot say now does not shrink a limit another worker set from its answer)."""
    if existing is None:
        return told or UNKNOWN_THREADS * clamds
    return told if told is not None and told != existing else None


def slots_taken(error: Exception) -> TypeGuard[httpx.HTTPStatusError]:
    """Whether asking for a slot failed for every slot being taken (``423 Locked``): anything
    else (a connection, a 5xx, a 422 for a limit set to 0) is an API that cannot be asked."""
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 423


def ask_again_after(error: httpx.HTTPStatusError) -> float:
    """Prefect's advice for when to ask again (``Retry-After``), at most
    :data:`ASK_AGAIN_SECONDS`."""
    try:
        advised = float(error.response.headers.get("Retry-After", ASK_AGAIN_SECONDS))
    except ValueError:
        advised = ASK_AGAIN_SECONDS
    return max(0.0, min(advised, ASK_AGAIN_SECONDS))


class ClamdBudget:
    """The limit of one clamd (or pool), as the scans of this worker take its slots."""

    def __init__(self, clamd: ClamdEngine) -> None:
        self.clamd = clamd
        self.name = limit_name(addresses_of(clamd))
        self._ensured = False

    async def ensure(self) -> None:
        """Create the limit when absent, and set its slots when they changed. Raises what the
        Prefect client raises when the API cannot be asked."""
        told = await asyncio.to_thread(self.clamd.scan_slots)
        clamds = len(addresses_of(self.clamd))
        async with get_client() as client:
            try:
                existing = await client.read_global_concurrency_limit_by_name(self.name)
            except ObjectNotFound:
                slots = slots_to_set(told, None, clamds)
                assert slots is not None
                try:
                    await client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=self.name, limit=slots))
                except ObjectAlreadyExists:  # another worker was first
                    pass
                else:
                    log_event(app_log, "clamd budget created", limit=self.name, slots=slots)
            else:
                slots = slots_to_set(told, existing.limit, clamds)
                if slots is not None:
                    await client.update_global_concurrency_limit(
                        self.name, GlobalConcurrencyLimitUpdate(limit=slots))
                    log_event(app_log, "clamd budget changed", limit=self.name,
                              slots=slots, was=existing.limit)
        self._ensured = True

    async def ensure_or_warn(self, logger: Logger) -> bool:
        """:meth:`ensure`, and False with a warning when the API cannot be asked."""
        try:
            await self.ensure()
        except Exception as exc:  # whatever the client raises: the scans go on without it
            logger.warning("clamd budget %s not set up: %s", self.name, one_line(str(exc)))
            return False
        return True

    @asynccontextmanager
    async def slot(self, logger: Logger, give_up: Callable[[], bool]) -> AsyncIterator[bool]:
        """Hold a slot of the limit for the block; yields False when ``give_up`` said so while
        waiting for one (a stop; nothing left to scan), else True (also when the API could
        not be asked: then without a slot, as the module docstring says).

        Prefect's lease API through the run's own client, not ``prefect.concurrency``'s
        ``concurrency()``: that one starts a thread with a client of its own per slot (40 ms
        of CPU for its TLS context alone) and sends two events, where a slot here costs two
        API calls (measured 5 ms each against a Prefect server on SQLite)."""
        async with get_client() as client:
            lease = await self._take(client, logger, give_up)
            if not isinstance(lease, UUID):
                yield lease
                return
            renewing = asyncio.create_task(self._renew(client, lease, logger))
            try:
                yield True
            finally:
                renewing.cancel()
                try:
                    async with _turn(self.name):
                        await client.release_concurrency_slots_with_lease(lease)
                except Exception as exc:  # whatever the client raises: the lease ends anyway
                    logger.warning("clamd slot of %s not given back, it is when its lease "
                                   "ends (%g s): %s", self.name, LEASE_SECONDS,
                                   one_line(str(exc)))

    async def _take(self, client: PrefectClient, logger: Logger,
                    give_up: Callable[[], bool]) -> UUID | bool:
        """The lease of a slot; else whether to scan: True without the budget, False to give
        up."""
        if not self._ensured and not await self.ensure_or_warn(logger):
            return True
        waiting_since: float | None = None
        recreated = False
        while True:
            try:
                async with _turn(self.name):
                    answer = await client.increment_concurrency_slots_with_lease(
                        names=[self.name], slots=1, mode="concurrency",
                        lease_duration=LEASE_SECONDS)
                granted = ConcurrencyLimitWithLeaseResponse.model_validate(answer.json())
            except Exception as exc:  # whatever the client raises
                if not slots_taken(exc):
                    logger.warning("scanning without the clamd budget %s: %s", self.name,
                                   one_line(str(exc)))
                    return True
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    logger.info("waiting for a clamd slot: %s", await self._in_use(client))
                await asyncio.sleep(ask_again_after(exc))
                if give_up():
                    return False
                continue
            if not granted.limits:  # no such limit (deleted meanwhile): create it again
                if recreated or not await self.ensure_or_warn(logger):
                    logger.warning("scanning without the clamd budget %s: it is missing",
                                   self.name)
                    return True
                recreated = True
                continue
            if waiting_since is not None:
                logger.info("got a clamd slot of %s after %.1f s", self.name,
                            time.monotonic() - waiting_since)
            return granted.lease_id

    async def _renew(self, client: PrefectClient, lease: UUID, logger: Logger) -> None:
        """Keep the lease while the slot is held (a lane may scan for longer than a lease)."""
        while True:
            await asyncio.sleep(LEASE_SECONDS * RENEW_AT)
            try:
                await client.renew_concurrency_lease(lease, LEASE_SECONDS)
            except Exception as exc:  # whatever the client raises: try again next time
                logger.warning("clamd slot of %s not renewed: %s", self.name,
                               one_line(str(exc)))

    async def _in_use(self, client: PrefectClient) -> str:
        """"4 of 4 in use (ssftp-clamd-...)", for the log line of a lane that waits."""
        try:
            limit = await client.read_global_concurrency_limit_by_name(self.name)
        except Exception:  # only the log line's detail
            return f"all in use ({self.name})"
        return f"{limit.active_slots} of {limit.limit} in use ({self.name})"


class Budgets:
    """The budget of the engine a scan uses now: a reload swaps the engine, and the budget
    (its name, its slots) follows it; none while ``on`` (:func:`budget_on`, asked each time:
    a reload may change it) says no."""

    def __init__(self, on: Callable[[], bool] = lambda: True) -> None:
        self.on = on
        self._of: tuple[Engine | None, ClamdBudget | None] = (None, None)

    def of(self, engine: Engine | None) -> ClamdBudget | None:
        if not self.on():
            return None
        if self._of[0] is not engine:
            clamd = clamd_of(engine)
            self._of = (engine, None if clamd is None else ClamdBudget(clamd))
        return self._of[1]


@asynccontextmanager
async def clamd_slot(budget: ClamdBudget | None, logger: Logger,
                     give_up: Callable[[], bool]) -> AsyncIterator[bool]:
    """:meth:`ClamdBudget.slot`, or True at once with no clamd to budget."""
    if budget is None:
        yield True
        return
    async with budget.slot(logger, give_up) as taken:
        yield taken
