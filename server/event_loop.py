"""The event loop the SFTP server runs on: uvloop.

A small SFTP request spends much of its time in the event loop itself: waking up, reading the
socket, writing the reply. uvloop does that part in C; in ``bench/`` it raised the 1000-file
upload session by about a tenth. Only the server's loop
uses it: the scan worker and Prefect's own threads keep asyncio's loop, the one Prefect is
tested on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a uvloop loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
