"""Before the Prefect server stops, what Prefect's log and event workers still hold is sent:
left to Python's exit, their flush waits for a server gone.
"""

from __future__ import annotations

import logging

from ssftp.logs import APP, log_event

logger = logging.getLogger(APP)
# How long a stop waits for each of Prefect's log and event workers to send what it holds:
# with the worker's part and the server's stop (up.py), within the 15 s a whole stop may take.
FLUSH_SECONDS = 2.0


def flush_prefect_workers(timeout: float = FLUSH_SECONDS) -> None:
    """Send what Prefect's log and event workers still hold, and stop them, while the API
    still answers; waits up to ``timeout`` for each, and logs those that did not finish (what
    they held is lost to the UI, not to ssftp: its own logs have it). Not on a thread with a
    running event loop (``drain_all`` would return a coroutine): ``asyncio.to_thread`` it."""
    # Imported here, not at the top: ``ssftp up`` imports this module before it knows its
    # Prefect server, and Prefect reads its settings (the API URL) once, as it loads; loaded
    # earlier, the worker would start a temporary server of its own.
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        drained = worker.drain_all(timeout=timeout, at_exit=False)
        assert isinstance(drained, tuple), "called on a thread with a running event loop"
        if drained[1]:
            log_event(logger, "Prefect worker not flushed in time", logging.WARNING,
                      worker=worker.__name__, timeout_seconds=timeout)
