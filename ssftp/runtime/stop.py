"""How a process stops: on SIGINT or SIGTERM, within a deadline.

A stop is bounded (:class:`StopDeadline`): past it, the process says what was still running
and exits, rather than hang in a flush or an exit handler that waits for a server gone. Its
children still go with it: they were started to die with their parent (ssftp.runtime.children).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading

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


async def run_until_stopped() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
