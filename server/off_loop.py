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

# A call, the future it settles (None when nobody waits for it), and the bytes it holds.
_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any] | None", Callable[[], Any], int]
# How far the thread may fall behind the calls nobody waits for (:meth:`SessionThread.start`):
# half the 2 MiB of writes OpenSSH's sftp keeps in flight, so a session holds at most this much
# of a client's data in memory while its disk is slow (or hung), and the writes the thread has
# gathered for one system call (server.upload_writer.GATHER_BYTES).
BEHIND_LIMIT = 1 << 20
# How long a call nobody waits for may wait for the session's next trip to the thread before
# it takes one of its own (:meth:`SessionThread.start`): well beyond a client's round trip
# (a fraction of a millisecond on a LAN), so that the next request carries it.
DEFER_SECONDS = 0.005


class SessionThread:
    """The one thread that makes a session's filesystem calls, started at its first call.

    One is all a session can use: asyncssh handles a session's requests one after another
    (it awaits each before it reads the next), so a session never needs two calls at once.
    One also means the session's own state (its handles, the upload writers) is only ever
    touched by one thread at a time, without locks, and a hung filesystem holds at most one
    thread per session that touched it; sessions are bounded per connection, account and
    address, so threads are too.

    Not a ``ThreadPoolExecutor``: its threads are joined when the interpreter exits, so one
    stuck on a hung filesystem would keep the server from ever stopping; this thread is a
    daemon. And each trip is a little cheaper (a queue in, ``call_soon_threadsafe`` back, no
    concurrent future to chain): trips are what running off the loop costs, some 0.1 ms
    each on a small VM; a small file uploaded makes two (open, close: its write is
    :meth:`start`-ed and goes with the close), one downloaded two (stat, open: the open
    reads the file's start; the close goes with the next file's stat).
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._shut_down = False
        # Calls started and not yet handed to the thread (see start), and the timer that
        # hands them over if no other call does first.
        self._deferred: list[_Call] = []
        self._deferred_timer: asyncio.TimerHandle | None = None
        # What the thread does once it has made every call queued (when_idle); touched by
        # the thread only.
        self._idle_calls: list[Callable[[], object]] = []
        # Bytes handed to calls nobody waits for, and those of them the thread is done with:
        # each counter has one writer (the loop, the thread), so neither needs a lock.
        self._handed = 0
        self._done = 0

    async def run(self, call: Callable[[], R]) -> R:
        """``call()`` in this thread, awaited on the loop; exceptions pass through."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._put((loop, future, call, 0))
        return await future

    async def start(self, call: Callable[[], object], size: int = 0) -> None:
        """Have ``call()`` run in this thread after the calls before it, without waiting for
        it, unless the thread is more than :data:`BEHIND_LIMIT` bytes behind (``size`` is
        what ``call`` holds): then until it has caught up.

        For what a client need not wait for (a write of an upload, the close of a download):
        every later call of the session runs after it, so a session still sees its own writes,
        and one trip to the thread and back is saved per request, most of a small file's
        cost. ``call`` must keep its own failure (an upload's writer remembers it, and the
        close refuses to publish): an exception it raises is dropped.

        The call is handed over with the session's next call, or after
        :data:`DEFER_SECONDS` if none comes: a small upload's write then goes with its
        close, and the thread is woken once for both rather than while the loop answers
        the write (where the two take turns at the interpreter).
        """
        loop = asyncio.get_running_loop()
        self._handed += size
        if self._handed - self._done <= BEHIND_LIMIT:
            self._defer((loop, None, call, size))  # no await: the caller goes on in this turn
            return
        caught_up: asyncio.Future[None] = loop.create_future()
        self._put((loop, caught_up, call, size))  # the calls before it are done by then
        await caught_up

    def _defer(self, item: _Call) -> None:
        self._require_running()
        self._deferred.append(item)
        if self._deferred_timer is None:
            self._deferred_timer = item[0].call_later(DEFER_SECONDS, self._hand_deferred)

    def _hand_deferred(self) -> None:
        """Queue the deferred calls, in order, ahead of whatever comes next."""
        if self._deferred_timer is not None:
            self._deferred_timer.cancel()
            self._deferred_timer = None
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            self._start_thread()
            for item in deferred:
                self._calls.put(item)

    def _put(self, item: _Call) -> None:
        self._require_running()
        self._hand_deferred()
        self._start_thread()
        self._calls.put(item)

    def _require_running(self) -> None:
        if self._shut_down:  # would wait forever: the thread is gone or going
            raise RuntimeError("the session's thread has been shut down")

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="ssftp-session",
                                            daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Let the thread end after the calls deferred so far and the call it may still be in
        (never waited for: that call may be stuck on a hung filesystem)."""
        self._hand_deferred()
        self._shut_down = True
        self._calls.put(None)

    def when_idle(self, call: Callable[[], object]) -> None:
        """In this thread: have ``call()`` made once the calls queued by now are done, before
        the thread waits for more (an upload's gathered writes, server.upload_writer).
        ``call`` must keep its own failure, as a started call must."""
        self._idle_calls.append(call)

    def _next(self) -> _Call | None:
        while self._idle_calls and self._calls.empty():
            with contextlib.suppress(Exception):
                self._idle_calls.pop(0)()
        return self._calls.get()

    def _serve(self) -> None:
        while (item := self._next()) is not None:
            loop, future, call, size = item
            try:
                outcome: tuple[Any, BaseException | None] = (call(), None)
            except BaseException as exc:  # handed to the awaiting request, whatever it is
                outcome = (None, exc)
            self._done += size
            if future is not None:
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
