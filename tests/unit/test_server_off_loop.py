"""A session's thread: calls awaited (run) and calls not waited for (start), in one order.

A threading.Event stands in for a hung filesystem: the thread is held inside a call exactly
as a read of a dead NFS share holds it, and let go when the test decides.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from server.off_loop import BEHIND_LIMIT, SessionThread

SETTLE = 30.0  # bounds a wait that ends at once when nothing is wrong


async def test_started_calls_run_in_order_before_the_calls_after_them() -> None:
    thread, done = SessionThread(), []
    for index in range(100):
        await thread.start(lambda index=index: done.append(index), size=10)
    assert await thread.run(lambda: list(done)) == list(range(100))
    thread.shutdown()


async def test_a_start_returns_at_once_while_the_thread_is_busy() -> None:
    """The write of a file on a slow disk does not hold the client's next request."""
    thread, held = SessionThread(), threading.Event()
    await thread.start(held.wait, size=100)
    await asyncio.wait_for(thread.start(lambda: None, size=BEHIND_LIMIT - 100), SETTLE)
    later = asyncio.ensure_future(thread.run(lambda: "after"))
    await asyncio.sleep(0.05)
    assert not later.done()  # in order: behind the call that is held
    held.set()
    assert await asyncio.wait_for(later, SETTLE) == "after"
    thread.shutdown()


async def test_a_start_beyond_the_limit_waits_until_the_thread_has_caught_up() -> None:
    """A hung disk holds at most BEHIND_LIMIT bytes of a session's writes in memory: the next
    start waits (only this session's request waits; the loop goes on)."""
    thread, held, ran = SessionThread(), threading.Event(), []
    await thread.start(held.wait, size=BEHIND_LIMIT)
    waiting = asyncio.ensure_future(thread.start(lambda: ran.append("late"), size=1))
    await asyncio.sleep(0.05)
    assert not waiting.done() and ran == []
    held.set()
    await asyncio.wait_for(waiting, SETTLE)
    assert ran == ["late"]
    # Caught up: the next start is not held any more.
    await asyncio.wait_for(thread.start(lambda: None, size=BEHIND_LIMIT), SETTLE)
    thread.shutdown()


async def test_an_exception_of_a_started_call_is_dropped_and_the_thread_goes_on() -> None:
    def fails() -> None:
        raise OSError("nobody waits for this")
    thread = SessionThread()
    await thread.start(fails)
    assert await thread.run(lambda: "still here") == "still here"
    thread.shutdown()


async def test_nothing_starts_after_a_shutdown() -> None:
    thread = SessionThread()
    thread.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await thread.start(lambda: None)
    with pytest.raises(RuntimeError, match="shut down"):
        await thread.run(lambda: None)


async def test_a_started_call_goes_with_the_next_call() -> None:
    """The write of a small upload waits for the close to wake the thread once for both:
    until then it has not run, and the close's call finds it done."""
    thread, ran = SessionThread(), []
    await thread.start(lambda: ran.append(threading.current_thread().name))
    assert ran == []
    assert await thread.run(lambda: list(ran)) == ["ssftp-session"]
    thread.shutdown()


async def test_a_started_call_with_no_call_after_it_runs_soon_all_the_same() -> None:
    thread, ran = SessionThread(), threading.Event()
    await thread.start(ran.set)
    assert await asyncio.to_thread(ran.wait, SETTLE)
    thread.shutdown()


async def test_a_shutdown_runs_the_started_calls_first() -> None:
    """An upload's last writes, started just before the session ended, are not lost."""
    thread, ran = SessionThread(), threading.Event()
    await thread.start(lambda: None)
    await thread.start(ran.set)
    thread.shutdown()
    assert await asyncio.to_thread(ran.wait, SETTLE)


async def test_an_idle_call_runs_once_the_calls_queued_are_done() -> None:
    """An upload's gathered writes reach the disk once the thread has nothing more to do,
    without a call of their own. (Normally after both calls here, which are queued together;
    not asserted: a loop descheduled between the two puts would let the thread run out of
    calls in between.)"""
    thread, order, idle = SessionThread(), [], threading.Event()

    def first() -> None:
        thread.when_idle(lambda: (order.append("idle"), idle.set()))
        order.append("first")
    await thread.start(first)
    await thread.start(lambda: order.append("second"))
    await thread.run(lambda: None)
    assert await asyncio.to_thread(idle.wait, SETTLE)
    assert order[0] == "first" and sorted(order) == ["first", "idle", "second"]
    thread.shutdown()
