"""The Prefect server that ``ssftp up`` talks to: one named by ``PREFECT_API_URL``, one already
answering on the local port (another instance of a chain started it), or its own.

Its own runs as a child process with its SQLite database under ``system/prefect``, analytics
off, so it works offline and keeps the run history with the rest of the instance's state. It
dies with ``ssftp up`` (also a SIGKILLed one: ``ssftp.processes.spawn_child``), and its pid
file lets the next start stop one that a killed ``up`` left shutting down, before it looks
for a server on the port (it would adopt a server about to go away).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ssftp.errors import PrefectServerError
from ssftp.logs import APP, log_event
from ssftp.processes import record_pid, spawn_child, stop_child, stop_leftover

logger = logging.getLogger(APP)
OFFLINE_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def is_healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=2).is_success
    except httpx.HTTPError:
        return False


@dataclass
class PrefectServer:
    api_url: str
    # None when the server belongs to someone else (PREFECT_API_URL, or already running).
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    pid_file: Path | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, grace_seconds=20)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)


def is_prefect_server(argv: list[str]) -> bool:
    """``.../prefect server start ...`` (the script runs under its Python interpreter)."""
    return any(Path(word).name == "prefect" and argv[at + 1:at + 3] == ["server", "start"]
               for at, word in enumerate(argv))


def _log_tail(log: Path, lines: int = 15) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def ensure_prefect_server(home: Path, port: int, *, pid_file: Path | None = None,
                          ready_timeout: float = 120.0) -> PrefectServer:
    """Find or start the Prefect server; blocks until it answers (first start migrates its DB,
    ~10 s). ``pid_file`` records the one started, and names one a killed predecessor left."""
    if api_url := os.environ.get("PREFECT_API_URL"):
        if not is_healthy(api_url):
            raise PrefectServerError(f"PREFECT_API_URL={api_url} does not answer")
        return PrefectServer(api_url)
    api_url = f"http://127.0.0.1:{port}/api"
    if pid_file is not None and (left := stop_leftover(
            pid_file, is_prefect_server, what="the Prefect server", error=PrefectServerError,
            grace_seconds=20)):
        log_event(logger, "stopped the Prefect server a killed ssftp left running",
                  logging.WARNING, pid=left.pid, pid_file=str(pid_file))
    if is_healthy(api_url):
        return PrefectServer(api_url)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    env = {**os.environ, **OFFLINE_ENV, "PREFECT_HOME": str(home)}
    prefect = Path(sys.executable).with_name("prefect")
    with log.open("ab") as output:
        process = spawn_child(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--analytics-off"], output=output, env=env)
    if pid_file is not None:
        record_pid(pid_file, process.pid)
    server = PrefectServer(api_url, process, log, pid_file)
    deadline = time.monotonic() + ready_timeout
    while not is_healthy(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise PrefectServerError(f"the Prefect server did not start on port {port}; the "
                                     f"end of {log}:\n{_log_tail(log)}")
        time.sleep(0.25)
    return server
