"""The Prefect server that ``ssftp up`` talks to: one named by ``PREFECT_API_URL``, one already
answering on the local port (another instance of a chain started it), or its own.

Its own runs as a child process with its SQLite database under ``system/prefect``, analytics
off, so it works offline and keeps the run history with the rest of the instance's state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ssftp.errors import PrefectServerError
from ssftp.processes import stop_child

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

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, grace_seconds=20)


def _log_tail(log: Path, lines: int = 15) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def ensure_prefect_server(home: Path, port: int, *, ready_timeout: float = 120.0) -> PrefectServer:
    """Find or start the Prefect server; blocks until it answers (first start migrates its DB,
    ~10 s)."""
    if api_url := os.environ.get("PREFECT_API_URL"):
        if not is_healthy(api_url):
            raise PrefectServerError(f"PREFECT_API_URL={api_url} does not answer")
        return PrefectServer(api_url)
    api_url = f"http://127.0.0.1:{port}/api"
    if is_healthy(api_url):
        return PrefectServer(api_url)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    env = {**os.environ, **OFFLINE_ENV, "PREFECT_HOME": str(home)}
    prefect = Path(sys.executable).with_name("prefect")
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--analytics-off"],
            env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = PrefectServer(api_url, process, log)
    deadline = time.monotonic() + ready_timeout
    while not is_healthy(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise PrefectServerError(f"the Prefect server did not start on port {port}; the "
                                     f"end of {log}:\n{_log_tail(log)}")
        time.sleep(0.25)
    return server
