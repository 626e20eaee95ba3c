"""A process's life: running until SIGINT or SIGTERM, and stopping the daemons it started
(clamd, the Prefect server): politely, then firmly."""

from __future__ import annotations

import asyncio
import signal
import subprocess


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


def stop_child(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM, wait up to ``grace_seconds`` for a clean exit, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
