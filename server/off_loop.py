"""A session's filesystem calls run off the event loop, in a thread of the session's own.

The event loop serves every session and every login. A filesystem call that hangs there (a
dead NFS server, a stopped FUSE daemon under one account's root) would stop all of them.
asyncssh awaits what an ``SFTPServer`` method returns when it is awaitable, so a method marked
with :func:`off_loop` runs unchanged in the session's thread while the loop goes on: a hang
ties up only the sessions that touched the hung filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class SessionThread:
    """The one thread that makes a session's filesystem calls, started at its first call.

    One is all a session can use: asyncssh handles a session's requests one after another
    (it awaits each before it reads the next), so a session never has two calls in flight.
    One also means the session's own state (its handles, the upload writers) is only ever
    touched by one thread at a time, without locks, and a hung filesystem holds at most one
    thread per session that touched it; sessions are bounded per connection, account and
    address, so threads are too.

    Not a ``ThreadPoolExecutor``: its threads are joined when the interpreter exits, so one
    stuck on a hung filesystem would keep the server from ever stopping; this thread is a
    daemon. And each trip is a little cheaper (a queue in, ``call_soon_threadsafe`` back, no
    concurrent future to chain): trips are what running off the loop costs, some 0.1 ms
    each on a small VM, three per small file uploaded (open, write, close).
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._shut_down = False

    async def run(self, call: Callable[[], R]) -> R:
        """``call()`` in this thread, awaited on the loop; exceptions pass through."""
        if self._shut_down:  # would wait forever: the thread is gone or going
            raise RuntimeError("the session's thread has been shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="ssftp-session",
                                            daemon=True)
            self._thread.start()
        self._calls.put((loop, future, call))
        return await future

    def shutdown(self) -> None:
        """Let the thread end after the call it may still be in (never waited for: that call
        may be stuck on a hung filesystem)."""
        self._shut_down = True
        self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            loop, future, call = item
            try:
                outcome: tuple[Any, BaseException | None] = (call(), None)
            except BaseException as exc:  # handed to the awaiting request, whatever it is
                outcome = (None, exc)
            # The loop is closed if the server stopped while the call hung: nobody waits.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del item, loop, future, call, outcome  # hold nothing while waiting for the next


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (its connection is gone)
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class RunsOffLoop(Protocol):
    """What :func:`off_loop` needs of the object whose methods it wraps."""

    @property
    def executor(self) -> SessionThread: ...


S = TypeVar("S", bound=RunsOffLoop)


async def run_off_loop(executor: SessionThread, call: Callable[P, R],
                       *args: P.args, **kwargs: P.kwargs) -> R:
    """``call(*args, **kwargs)`` in ``executor``, awaited on the loop."""
    return await executor.run(functools.partial(call, *args, **kwargs))


def off_loop(method: Callable[Concatenate[S, P], R],
             ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Make a blocking method a coroutine that runs it in ``self.executor``."""
    async def in_executor(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await run_off_loop(self.executor, method, self, *args, **kwargs)
    # Its name and docstring are the method's; functools.wraps would type it as a wrapper,
    # not as the coroutine function it is.
    functools.update_wrapper(in_executor, method)
    return in_executor
