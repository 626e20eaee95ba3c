"""How a scan or rescan run ends on a stop: it finishes the file in hand and reports what it
did, in a state that says it was interrupted.

A stop (Ctrl-C, SIGTERM) first asks the runs to stop (:class:`Stop`, checked between files,
also in the threads that scan), then gives them a moment before it cancels what is left. A
cancellation of a run's body only asks too: the body is shielded, so a run cut short still
publishes its tables, name and tags, where Prefect would otherwise record it ``Crashed``
(nameless, untagged, although the files it scanned were moved), and a scan in a thread would go
on to the end of its slice unreported.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from prefect.client.schemas.objects import State
from prefect.states import Cancelled

T = TypeVar("T")

# The state name and tag of a run a stop cut short.
INTERRUPTED = "Interrupted"
INTERRUPTED_TAG = "interrupted"

# Set once the process stops: the runs under way finish the file in hand, and report.
Stop = threading.Event


async def shielded(body: Coroutine[Any, Any, T], stop: Stop) -> T:
    """``body``'s result, also when the caller is cancelled: that sets ``stop`` and waits for
    the body to end. A second cancellation is not shielded: the stop's deadline wins."""
    running = asyncio.ensure_future(body)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        stop.set()
        return await running


def interrupted(data: T, message: str) -> State[T]:
    """The state of a run a stop cut short: ``Cancelled``, as Prefect names a run ended from
    outside, and named for what happened."""
    return Cancelled(name=INTERRUPTED, message=message, data=data)


def was_interrupted(state: State[Any]) -> bool:
    """True for the state :func:`interrupted` made."""
    return state.is_cancelled() and state.name == INTERRUPTED


def pass_on_cancellation() -> None:
    """Raise the cancellation a shielded run took in, once it has ended: the caller's task was
    cancelled, and goes no further."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
