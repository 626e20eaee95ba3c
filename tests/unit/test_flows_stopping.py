"""A run's work under a stop (flows.stopping), without Prefect: a cancellation becomes the
work's stop event, and the work's own result comes back."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prefect.states import Cancelled, Completed

from flows.stopping import interrupted, until_stopped, was_interrupted


def test_work_left_alone_returns_its_result_not_stopped():
    async def work(stop: threading.Event) -> list[int]:
        return [1, 2]

    assert asyncio.run(until_stopped(work)) == ([1, 2], False)


def test_a_cancellation_sets_the_stop_and_the_work_returns_what_it_did():
    started, done = asyncio.Event(), []

    async def work(stop: threading.Event) -> list[int]:
        for item in range(100):
            if stop.is_set():
                break
            done.append(item)
            started.set()
            await asyncio.sleep(0.001)
        return done

    async def cancel_it() -> tuple[list[int], bool]:
        task = asyncio.create_task(until_stopped(work))
        await started.wait()
        task.cancel()
        return await task

    result, stopped = asyncio.run(cancel_it())
    assert stopped
    assert 0 < len(result) < 100


def test_a_second_cancellation_is_not_shielded():
    async def work(stop: threading.Event) -> None:
        await asyncio.sleep(60)

    async def cancel_twice() -> None:
        task = asyncio.create_task(until_stopped(work))
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
