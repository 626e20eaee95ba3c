"""The clamd budget's plain parts: the limit's name, its slots, what a refusal means. Slots
taken and waited for on a real Prefect server are in tests/integration/test_flows_scan.py."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.types.names import BANNED_CHARACTERS

from flows.clamd_budget import (
    ASK_AGAIN_SECONDS,
    UNKNOWN_THREADS,
    Budgets,
    ClamdBudget,
    ask_again_after,
    budget_on,
    clamd_of,
    limit_name,
    slots_taken,
    slots_to_set,
)
from ssftp.addresses import ClamdAddress, IcapAddress
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.engines import Engines
from ssftp.scan.icap import IcapClient
from ssftp.scan.pool import ClamdPool
from ssftp.scan.queue import PrefectDatabase

ADDRESSES = ["/run/clamav/clamd.ctl", "clamd:3310", "tcp://10.0.0.7:3310", "[::1]:3310",
             "unix:run/clamd.sock", "/tmp/a b%c&d<e>f?g#h/clamd.sock"]


def address(text: str) -> ClamdAddress:
    return ClamdAddress.parse(text)


def test_a_limit_is_named_after_its_clamds_address():
    assert limit_name([address("clamd:3310")]) == "ssftp-clamd-clamd:3310"
    assert limit_name([address("tcp://10.0.0.7:3310")]) == "ssftp-clamd-10.0.0.7:3310"
    assert limit_name([address("/run/clamav/clamd.ctl")]) == "ssftp-clamd-run-clamav-clamd.ctl"


def test_a_pools_limit_names_all_its_clamds_in_any_order():
    pool = [address("clamd-b:3310"), address("/run/a.sock")]
    assert limit_name(pool) == "ssftp-clamd-clamd-b:3310,run-a.sock"
    assert limit_name(pool[::-1]) == limit_name(pool)


@pytest.mark.parametrize("text", ADDRESSES)
def test_every_name_is_one_prefect_takes_and_one_a_url_path_carries(text):
    name = limit_name([address(text)])
    assert not set(name) & set(BANNED_CHARACTERS)
    assert re.fullmatch(r"ssftp-clamd-[A-Za-z0-9._:,-]+", name)
    GlobalConcurrencyLimitCreate(name=name, limit=1)  # Prefect's own check of a name


@pytest.mark.parametrize(("told", "existing", "clamds", "wanted"), [
    (4, None, 1, 4),  # created with what clamd (or the config) tells
    (None, None, 1, UNKNOWN_THREADS),  # created while nobody can say
    (None, None, 3, 3 * UNKNOWN_THREADS),  # ... for each clamd of a pool
    (4, 4, 1, None),  # unchanged: left alone
    (8, 4, 1, 8),  # the config or clamd changed: set again
    (2, 4, 1, 2),
    (None, 6, 1, None),  # clamd cannot say now: another worker's answer stands
])
def test_the_slots_are_set_when_told_and_changed_and_created_when_absent(told, existing,
                                                                         clamds, wanted):
    assert slots_to_set(told, existing, clamds) == wanted


def answered(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    """The error the Prefect client raises for an answer of ``status``."""
    request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/increment")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError("refused", request=request, response=response)


def test_only_a_423_is_slots_taken_anything_else_an_api_that_cannot_be_asked():
    assert slots_taken(answered(423, {"Retry-After": "0.5"}))
    assert not slots_taken(answered(500))
    assert not slots_taken(answered(422))  # a limit set to 0 slots
    assert not slots_taken(httpx.ConnectError("refused"))
    assert not slots_taken(RuntimeError("the client is closed"))


@pytest.mark.parametrize(("retry_after", "wait"), [
    ("0.25", 0.25), ("12", ASK_AGAIN_SECONDS), ("soon", ASK_AGAIN_SECONDS),
    (None, ASK_AGAIN_SECONDS), ("-3", 0.0)])
def test_a_lane_asks_again_as_prefect_advises_but_soon_enough_to_see_a_stop(retry_after,
                                                                             wait):
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    assert ask_again_after(answered(423, headers)) == wait


def test_the_budget_is_the_clamds_or_the_pools_and_icap_has_none():
    clamd = ClamdClient(address("clamd:3310"))
    icap = IcapClient([IcapAddress.parse("icap://127.0.0.1/avscan")], timeout=1)
    pool = ClamdPool([ClamdClient(address("a:3310")), ClamdClient(address("b:3310"))])
    assert clamd_of(clamd) is clamd
    assert clamd_of(Engines([pool, icap])) is pool
    assert clamd_of(Engines([icap])) is None
    assert clamd_of(None) is None  # scanning off


@pytest.mark.parametrize(("max_scans", "database", "on"), [
    (None, PrefectDatabase.SQLITE, False),  # ssftp up on its own SQLite: one worker alone
    (None, PrefectDatabase.POSTGRESQL, True),
    (None, None, True),  # a worker, or up on another's server: its database is unknown
    (4, PrefectDatabase.SQLITE, True),  # asked for
])
def test_the_budget_is_off_only_on_ssftp_ups_own_sqlite_unless_asked_for(max_scans, database,
                                                                         on):
    assert budget_on(max_scans, database) is on


def test_a_budget_switched_off_is_none_and_on_again_after_a_reload():
    switch = [False]
    budgets = Budgets(lambda: switch[0])
    clamd = ClamdClient(address("clamd:3310"))
    assert budgets.of(clamd) is None
    switch[0] = True
    on = budgets.of(clamd)
    assert on is not None and on.name == "ssftp-clamd-clamd:3310"


def test_a_reload_that_swaps_the_engine_gets_its_budget_and_the_same_engine_keeps_it():
    budgets = Budgets()
    first = ClamdClient(address("clamd:3310"))
    budget = budgets.of(first)
    assert budget is not None and budget.name == "ssftp-clamd-clamd:3310"
    assert budgets.of(first) is budget
    swapped = budgets.of(ClamdClient(address("other:3310")))
    assert swapped is not None and swapped.name == "ssftp-clamd-other:3310"
    assert budgets.of(None) is None


def test_with_the_prefect_api_unreachable_a_lane_scans_without_the_budget_and_says_so(
        fake_clamd, caplog):
    """The budget keeps clamd from overload; it does not decide verdicts, and an orchestrator
    that cannot be asked must not hold the files (each still gets its verdict)."""
    budget = ClamdBudget(ClamdClient(fake_clamd.address))
    logger = logging.getLogger("test.clamd-budget")

    async def take() -> bool:
        async with budget.slot(logger, lambda: False) as may_scan:
            return may_scan

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), \
            caplog.at_level(logging.WARNING, logger="test.clamd-budget"):
        assert asyncio.run(take()) is True
    assert [record.getMessage() for record in caplog.records
            if record.getMessage().startswith(f"clamd budget {budget.name} not set up")]

