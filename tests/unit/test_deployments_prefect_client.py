"""The short first wait before Prefect's client retries a 503 (deployments.prefect_client).

Prefect's own client against a server whose answers the test chooses: httpx's MockTransport
stands for a Prefect server refusing a write on SQLite's lock, which a real one does only when
two writers happen to meet (a failure the test cannot cause at will)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

from deployments.prefect_client import (
    FIRST_RETRY_SECONDS,
    RETRY_FACTOR,
    retry_after,
    retry_locked_writes_soon,
)


def busy_then_ok(busy: int) -> httpx.MockTransport:
    answers = iter([503] * busy + [200])

    def answer(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json={}, request=request)

    return httpx.MockTransport(answer)


def test_each_503_of_a_request_waits_longer_and_the_first_not_2_s():
    request = httpx.Request("POST", "http://127.0.0.1/api/flow_runs/")
    waits = []
    for _ in range(3):
        response = httpx.Response(503, request=request)
        retry_after(response)
        waits.append(float(response.headers["Retry-After"]))
    assert waits == [FIRST_RETRY_SECONDS, FIRST_RETRY_SECONDS * RETRY_FACTOR,
                     FIRST_RETRY_SECONDS * RETRY_FACTOR ** 2]
    assert FIRST_RETRY_SECONDS < 2  # Prefect's own first wait


def test_a_server_s_own_retry_after_and_other_answers_are_left_alone():
    request = httpx.Request("GET", "http://127.0.0.1/api/health")
    told = httpx.Response(503, headers={"Retry-After": "7"}, request=request)
    retry_after(told)
    assert told.headers["Retry-After"] == "7"
    for status in (200, 429, 500):
        response = httpx.Response(status, request=request)
        retry_after(response)
        assert "Retry-After" not in response.headers


@pytest.fixture(scope="module")
def hooked() -> None:
    retry_locked_writes_soon()
    retry_locked_writes_soon()  # once is what counts


def test_prefect_s_async_client_retries_a_busy_server_after_the_short_waits(hooked):
    """What Prefect's retry loop reads: the waits of the schedule, one per 503."""
    waits: list[str | None] = []

    async def note(response: httpx.Response) -> None:
        waits.append(response.headers.get("Retry-After"))

    async def post() -> int:
        async with PrefectHttpxAsyncClient(transport=busy_then_ok(2),
                                           base_url="http://127.0.0.1/api") as client:
            client.event_hooks["response"].append(note)  # after ssftp's
            return (await client.post("/flow_runs/")).status_code

    assert asyncio.run(post()) == 200
    assert waits == [f"{FIRST_RETRY_SECONDS:g}", f"{FIRST_RETRY_SECONDS * RETRY_FACTOR:g}", None]


def test_prefect_s_sync_client_too(hooked):
    waits: list[str | None] = []
    with PrefectHttpxSyncClient(transport=busy_then_ok(1),
                                base_url="http://127.0.0.1/api") as client:
        client.event_hooks["response"].append(
            lambda response: waits.append(response.headers.get("Retry-After")))
        assert client.post("/flow_runs/").status_code == 200
    assert waits == [f"{FIRST_RETRY_SECONDS:g}", None]
    # Installed once, however often asked.
    assert sum(getattr(hook, "__name__", "") == "retry_after"
               for hook in client.event_hooks["response"]) == 1
