"""Waiting for something to happen: the one poll loop of the tests.

A test never asserts on time. It waits for the state it expects, and the deadline only turns
a hang into a failure that says what never happened (generous: the machine running the suite
may be busy with other suites too).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

TIMEOUT = 120.0
INTERVAL = 0.05


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = TIMEOUT,
             details: Callable[[], str] = lambda: "", interval: float = INTERVAL) -> T:
    """Poll ``probe`` until it returns something truthy, and return that; fail saying
    ``what`` never happened (and ``details()``, e.g. the end of a process's output)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s\n{details()}")
        time.sleep(interval)


async def wait_for_async(what: str, probe: Callable[[], T | Awaitable[T | None] | None],
                         timeout: float = TIMEOUT, interval: float = INTERVAL) -> T:
    """:func:`wait_for` inside an event loop, which keeps running meanwhile (the test's own
    client side of a connection); ``probe`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s")
        await asyncio.sleep(interval)
