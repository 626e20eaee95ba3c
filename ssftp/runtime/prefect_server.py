"""The Prefect server that ``ssftp up`` talks to: its own, started on ``--prefect-port``, or
someone else's, only when told so (``--prefect-url``, or ``PREFECT_API_URL``). A port where
something already answers is an error, never a server adopted in silence: another
instance's runs would show in this one's UI, and that instance's stop would pull the API from
under this one.

Its own runs as a child process with its SQLite database under ``system/prefect``, so it works
offline and keeps the run history with the rest of the instance's state; or on the database
``PREFECT_API_DATABASE_CONNECTION_URL`` names, which it inherits with the rest of the
environment (PostgreSQL: scan runs may then overlap, :func:`ssftp.scan.queue.runs_at_once`).
Analytics off, its UI pointed at its own port (``PREFECT_UI_API_URL``: by default the UI calls
4200). Its console is kept in memory, as clamd's is (``ssftp.runtime.children.ConsoleTail``):
the last lines say why a start failed, and no log file grows for as long as it runs. It dies
with ``ssftp up`` (also a SIGKILLed one: ``ssftp.runtime.children.spawn_child``), and its pid
file lets the next start stop one that a killed ``up`` left shutting down, before it looks at
the port.

It is driven over HTTP and as a process only: Prefect's own client (its log and event workers,
flushed before the server stops) is deployments.prefect_flush's.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from ssftp.errors import PrefectServerError
from ssftp.logs import APP, log_event
from ssftp.runtime.children import (
    CONSOLE_SETTLE_SECONDS,
    ConsoleTail,
    spawn_with_console,
    stop_child,
)
from ssftp.runtime.pid_files import record_pid, stop_leftover
from ssftp.scan.queue import PrefectDatabase

logger = logging.getLogger(APP)
OFFLINE_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# Where Prefect's server reads its database URL, the first set winning (as Prefect 3.8 reads
# them: the SERVER name is its own, the API name the older alias that its docs still use).
DATABASE_URL_VARIABLES = ("PREFECT_SERVER_DATABASE_CONNECTION_URL",
                          "PREFECT_API_DATABASE_CONNECTION_URL")
POSTGRESQL_PORT = 5432
# How long a start waits for the database's port to accept a connection.
DATABASE_CONNECT_SECONDS = 3.0
# The leases of concurrency slots (the clamd budget's: flows.clamd_budget) kept in files under
# its home rather than in its memory: a server killed while a scan held a slot would otherwise
# come back with the slot taken and no lease to expire it, and the budget would shrink for
# good.
LEASES_ENV = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE":
              "prefect.server.concurrency.lease_storage.filesystem"}


def is_healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=2).is_success
    except httpx.HTTPError:
        return False


OURS = "started by this instance"
# How long a stop waits for the server to exit after SIGTERM (then SIGKILL): with the
# worker's part and the flush (up.py), within the 15 s a whole stop may take.
SERVER_STOP_SECONDS = 5.0
# The lines of its console that a failed start shows.
FAILURE_LINES = 15


@dataclass
class PrefectServer:
    api_url: str
    # OURS, or "not ours: " and what named it (--prefect-url, PREFECT_API_URL).
    owner: str
    # Its database; None when the server belongs to someone else (its API does not say).
    database: PrefectDatabase | None = None
    # None when the server belongs to someone else.
    process: subprocess.Popen[bytes] | None = None
    console: ConsoleTail | None = None
    pid_file: Path | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def runs_url(self, tag: str) -> str:
        """The UI's runs list showing the runs tagged ``tag``: the query of Prefect 3's
        default UI (v2, under ``/v2``), whose runs page takes ``tags`` as a comma-separated
        list (read from its bundle, prefect/server/ui-v2)."""
        return f"{self.ui_url}/v2/runs?tags={quote(tag)}"

    def describe(self) -> str:
        """``http://127.0.0.1:4200 (started by this instance)``: for the banner."""
        return f"{self.ui_url} ({self.owner})"

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Block until our own server answers (a first start migrates its DB, ~10 s); stopped,
        with its console's last lines in the error, if it exits or ``timeout`` passes first.
        Someone else's answered when it was named."""
        if self.process is None:
            return
        deadline = time.monotonic() + timeout
        while not is_healthy(self.api_url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                last = (self.console.last(FAILURE_LINES, settle_seconds=CONSOLE_SETTLE_SECONDS)
                        if self.console is not None else [])
                raise PrefectServerError(
                    f"the Prefect server did not start on port {urlsplit(self.api_url).port}; "
                    "its last lines:\n" + "\n".join(last or ["(none)"]))
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, grace_seconds=SERVER_STOP_SECONDS)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)


def is_prefect_server(argv: list[str]) -> bool:
    """``.../prefect server start ...`` (the script runs under its Python interpreter)."""
    return any(Path(word).name == "prefect" and argv[at + 1:at + 3] == ["server", "start"]
               for at, word in enumerate(argv))


def _answers(port: int) -> bool:
    """Whether anything accepts a connection on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def named_server(url: str | None) -> PrefectServer | None:
    """Someone else's server, when ``url`` (``--prefect-url``) or ``PREFECT_API_URL`` names
    one: it must answer."""
    source = "--prefect-url"
    if not url:
        source, url = "PREFECT_API_URL", os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    if not is_healthy(url):
        raise PrefectServerError(f"{source} {url} does not answer (the API URL, e.g. "
                                 "http://127.0.0.1:4200/api)")
    return PrefectServer(url, f"not ours: {source}")


def database_of(environ: Mapping[str, str]) -> PrefectDatabase:
    """The database the Prefect server started with ``environ`` uses: SQLite unless a
    :data:`DATABASE_URL_VARIABLES` names another. A URL Prefect cannot use, or a PostgreSQL
    whose port does not answer, is a one-line error now rather than a server that fails to
    start (its console's last lines) or waits for it. The URL holds a password: never shown."""
    variable = next((name for name in DATABASE_URL_VARIABLES if environ.get(name)), None)
    if variable is None:
        return PrefectDatabase.SQLITE
    try:
        url = urlsplit(environ[variable])
        host, port = url.hostname, url.port or POSTGRESQL_PORT
    except ValueError as exc:
        raise PrefectServerError(f"{variable} is not a URL ({exc})") from None
    if url.scheme.startswith("sqlite"):
        return PrefectDatabase.SQLITE
    if url.scheme != "postgresql+asyncpg":
        given = f"{url.scheme}://" if url.scheme else "one without a scheme"
        raise PrefectServerError(
            f"{variable}: Prefect's server takes postgresql+asyncpg:// (or sqlite+aiosqlite://) "
            f"URLs, not {given}")
    if host:  # else a Unix socket (``?host=/run/postgresql``): the server says
        try:
            socket.create_connection((host, port), timeout=DATABASE_CONNECT_SECONDS).close()
        except OSError as exc:
            raise PrefectServerError(
                f"{variable}: the PostgreSQL at {host}:{port} does not answer "
                f"({exc.strerror or exc}); start it, or unset {variable} for SQLite under "
                "system/prefect") from None
    return PrefectDatabase.POSTGRESQL


def start_prefect_server(home: Path, port: int, *, url: str | None = None,
                         pid_file: Path | None = None) -> PrefectServer:
    """The server named (``url``, else ``PREFECT_API_URL``), or our own started on ``port``,
    which answers once :meth:`PrefectServer.wait_until_ready` returns: its ~4 s of start
    leave the caller free to start the rest meanwhile. ``pid_file`` records the one started,
    and names one a killed predecessor left."""
    if named := named_server(url):
        return named
    api_url = f"http://127.0.0.1:{port}/api"
    if pid_file is not None and (left := stop_leftover(
            pid_file, is_prefect_server, what="the Prefect server", error=PrefectServerError,
            grace_seconds=20)):
        log_event(logger, "stopped the Prefect server a killed ssftp left running",
                  logging.WARNING, pid=left.pid, pid_file=str(pid_file))
    if _answers(port):
        what = "a Prefect server" if is_healthy(api_url) else "something"
        raise PrefectServerError(
            f"--prefect-port {port} is taken ({what} answers on 127.0.0.1:{port}): choose a "
            f"free one, or use that server with --prefect-url {api_url}")
    database = database_of(os.environ)
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **OFFLINE_ENV, **LEASES_ENV, "PREFECT_HOME": str(home),
           "PREFECT_UI_API_URL": api_url}
    prefect = Path(sys.executable).with_name("prefect")
    process, console = spawn_with_console(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--analytics-off"], env=env)
    if pid_file is not None:
        record_pid(pid_file, process.pid)
    return PrefectServer(api_url, OURS, database, process, console, pid_file)
