"""A session's filesystem calls run off the event loop, in a thread of the session's own.

The event loop serves every session and every login. A filesystem call that hangs there (a
dead NFS server, a stopped FUSE daemon under one account's root) would stop all of them.
asyncssh awaits what an ``SFTPServer`` method returns when it is awaitable, so a method marked
with :func:`off_loop` runs unchanged in the session's executor while the loop goes on: a hang
ties up only the sessions that touched the hung filesystem.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class RunsOffLoop(Protocol):
    """What :func:`off_loop` needs of the object whose methods it wraps."""

    @property
    def executor(self) -> Executor: ...


S = TypeVar("S", bound=RunsOffLoop)


def session_executor() -> ThreadPoolExecutor:
    """The executor of one session: a single worker thread, started on first use.

    One is all a session can use: asyncssh handles a session's requests one after another
    (it awaits each before it reads the next), so a session never has two calls in flight.
    One also means the session's own state (its handles, their byte counts, the upload
    writers) is only ever touched by one thread at a time, without locks, and a hung
    filesystem holds at most one thread per session that touched it; sessions are bounded
    per connection, account and address, so threads are too.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssftp-session")


async def run_off_loop(executor: Executor, call: Callable[P, R],
                       *args: P.args, **kwargs: P.kwargs) -> R:
    """``call(*args, **kwargs)`` in ``executor``, awaited on the loop; exceptions pass through."""
    return await asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(call, *args, **kwargs))


def off_loop(method: Callable[Concatenate[S, P], R],
             ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Make a blocking method a coroutine that runs it in ``self.executor``."""
    @functools.wraps(method)
    async def in_executor(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        return await run_off_loop(self.executor, method, self, *args, **kwargs)
    return in_executor
