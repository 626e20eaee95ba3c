"""A run's work that a stop lets finish the file in hand, so the run can report what it did.

A stop cancels the asyncio task that runs a flow. Left to itself, the cancellation cuts the run
short wherever it is, and Prefect records it ``Crashed``: no tables, no name, no tags, although
the files it scanned were moved (a scan in a thread even goes on to the end of its slice,
unreported). Shielded instead, the work sees the stop as an event it checks between files, and
the run ends with a state of its own that says it was interrupted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from prefect.client.schemas.objects import State
from prefect.states import Cancelled

T = TypeVar("T")

# The state name and tag of a run a stop cut short.
INTERRUPTED = "Interrupted"
INTERRUPTED_TAG = "interrupted"


async def until_stopped(work: Callable[[threading.Event], Coroutine[Any, Any, T]],
                        ) -> tuple[T, bool]:
    """``work``'s result, and whether a stop cut it short: a cancellation of the caller sets
    the event ``work`` was given (checked between files, also in threads) and waits for it to
    return what it did. A second cancellation is not shielded: the stop's deadline wins."""
    stop = threading.Event()
    running = asyncio.ensure_future(work(stop))
    try:
        return await asyncio.shield(running), False
    except asyncio.CancelledError:
        stop.set()
        return await running, True


def interrupted(data: T, message: str) -> State[T]:
    """The state of a run a stop cut short: ``Cancelled``, as Prefect names a run ended from
    outside, and named for what happened."""
    return Cancelled(name=INTERRUPTED, message=message, data=data)


def was_interrupted(state: State[Any]) -> bool:
    """True for the state :func:`interrupted` made: its caller goes on with the stop."""
    return state.is_cancelled() and state.name == INTERRUPTED
