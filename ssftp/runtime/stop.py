"""How a process stops: on SIGINT or SIGTERM, within a deadline; and what SIGHUP does (reload
the config, never stop).

A stop is bounded (:class:`StopDeadline`): past it, the process says what was still running
and exits, rather than hang in a flush or an exit handler that waits for a server gone. Its
children still go with it: they were started to die with their parent (ssftp.runtime.children).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable

# How long a whole stop may take, from SIGINT/SIGTERM to the end of the process.
STOP_SECONDS = 15.0
# The exit status of a stop that its deadline ended.
FORCED_EXIT_STATUS = 2


class StopDeadline:
    """The bound of a stop: :meth:`arm` when the stop begins, :meth:`step` as it goes. Once
    ``seconds`` have passed (a flush stuck on a dead server, a thread that never ends, an exit
    handler of a library waiting for either) one line on stderr names the step under way and
    the threads that still run, and the process ends with ``os._exit``: its children get their
    SIGTERM from the kernel (``spawn_child``). The line is written with ``os.write``: the
    logging handlers' locks may be held by the very thread that hangs."""

    def __init__(self, seconds: float = STOP_SECONDS) -> None:
        self.seconds = seconds
        self._step = "stopping"
        self._timer = threading.Timer(seconds, self._force)
        self._timer.daemon = True  # the timer itself never keeps the process alive

    def arm(self, step: str) -> None:
        self._step = step
        self._timer.start()

    def step(self, step: str) -> None:
        self._step = step

    def _force(self) -> None:
        running = sorted(thread.name for thread in threading.enumerate()
                         if not thread.daemon and thread is not threading.main_thread())
        line = (f"ssftp: the stop took more than {self.seconds:.0f} s, forced exit while "
                f"{self._step} (threads still running: {', '.join(running) or 'main only'})\n")
        os.write(2, line.encode(errors="replace"))
        os._exit(FORCED_EXIT_STATUS)


def ignore_hangups() -> None:
    """Let SIGHUP end nothing: until :func:`run_until_stopped` takes it to reload the config
    (a ``systemctl reload`` while the process starts, or while it stops), its default action
    would kill the process. Call it first thing in a process that reloads on SIGHUP.

    A handler that does nothing rather than SIG_IGN: an ignored signal stays ignored across
    exec, in every child (clamd, the Prefect server), where a handled one is reset."""
    signal.signal(signal.SIGHUP, _ignore)


def _ignore(_signal: int, _frame: object) -> None:
    """SIGHUP outside :func:`run_until_stopped`."""


async def run_until_stopped(reload: Callable[[], None] | None = None) -> None:
    """Wait for SIGINT or SIGTERM; on SIGHUP meanwhile, call ``reload`` (the config store's
    :meth:`~ssftp.config.reload.ConfigStore.ask`), which never stops the process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if reload is not None:
            loop.remove_signal_handler(signal.SIGHUP)  # which restores the default: kill
            ignore_hangups()
