"""A run's body under a stop (flows.stopping), without Prefect: a cancellation becomes the
body's stop, the body's own result comes back, and the cancellation is passed on after."""

from __future__ import annotations

import asyncio

import pytest
from prefect.states import Cancelled, Completed

from flows.stopping import Stop, interrupted, pass_on_cancellation, shielded, was_interrupted


async def count_until(stop: Stop, started: asyncio.Event) -> int:
    done = 0
    while not stop.is_set() and done < 10_000:
        done += 1
        started.set()
        await asyncio.sleep(0.001)
    return done


def test_a_body_left_alone_returns_its_result():
    async def body() -> list[int]:
        return [1, 2]

    assert asyncio.run(shielded(body(), Stop())) == [1, 2]


def test_a_cancellation_sets_the_stop_and_the_body_returns_what_it_did():
    stop = Stop()

    async def cancel_it() -> int:
        started = asyncio.Event()
        task = asyncio.create_task(shielded(count_until(stop, started), stop))
        await started.wait()
        task.cancel()
        return await task

    done = asyncio.run(cancel_it())
    assert stop.is_set()
    assert 0 < done < 10_000


def test_the_cancellation_is_passed_on_once_the_body_has_ended():
    stop, steps = Stop(), []

    async def runs_then_goes_on(started: asyncio.Event) -> None:
        steps.append(await shielded(count_until(stop, started), stop))
        pass_on_cancellation()
        steps.append("went on")

    async def cancel_it() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(runs_then_goes_on(started))
        await started.wait()
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancel_it())
    assert len(steps) == 1 and 0 < steps[0] < 10_000


def test_a_second_cancellation_is_not_shielded():
    async def body() -> None:
        await asyncio.sleep(60)

    async def cancel_twice() -> None:
        task = asyncio.create_task(shielded(body(), Stop()))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancel_twice())


def test_only_the_interrupted_state_counts_as_interrupted():
    assert was_interrupted(interrupted([], "interrupted by a stop after 0 of 1"))
    assert not was_interrupted(Cancelled())
    assert not was_interrupted(Completed(name="Interrupted"))
