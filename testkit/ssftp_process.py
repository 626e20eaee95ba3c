"""``ssftp serve``, ``ssftp up`` or ``ssftp worker`` as a user runs it: the console script of
this Python, in a process of its own on a chosen port, until it answers with an SSH banner (and,
for ``up``, says it is up; a ``worker``, which listens on no port, until it says it started).

The benchmarks measure such a process; the tests that need the real process (its descriptor
limit, its memory, its stop) drive one too. Each is started in its own session and stopped
with its whole group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ssftp.layout import DataLayout
from testkit.openssh_server import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


class StartError(RuntimeError):
    """An ssftp process could not be started; the message says which and why."""


def ssftp_command() -> list[str]:
    """The ``ssftp`` entry point of the Python running the benchmark (the project's venv)."""
    beside = Path(sys.executable).with_name("ssftp")
    if beside.exists():
        return [str(beside)]
    if found := shutil.which("ssftp"):
        return [found]
    raise StartError("the ssftp command is not installed (run ./test or scripts/bootstrap.sh)")


def child_env(workdir: Path) -> dict[str, str]:
    """No Prefect server or profile of the caller's: ``ssftp up`` starts its own, offline."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_HOME=str(workdir / "prefect-home"))
    return env


def wait_for_banner(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), \
                socket.create_connection((HOST, port), timeout=2) as sock:
            if sock.recv(64).startswith(b"SSH-2.0-"):
                return
        time.sleep(0.05)
    raise StartError(f"{what} sent no SSH banner on port {port}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no output: {exc})"


@dataclass
class SsftpProcess:
    """``ssftp serve``, ``ssftp up`` or ``ssftp worker``, output in ``<data>.out``."""

    process: subprocess.Popen[bytes]
    port: int
    layout: DataLayout
    output: Path

    @classmethod
    def start(cls, command: str, workdir: Path, config: Path, data: Path,
              extra_args: tuple[str, ...] = (), *, env: Mapping[str, str] | None = None,
              output: Path | None = None) -> SsftpProcess:
        """``env``: variables on top of :func:`child_env`'s; ``output``: where its console
        goes (default ``<data>.out``; several processes on one data root need one each). A
        ``worker`` listens on no port (``port`` is 0): it is started once it says so."""
        port = 0 if command == "worker" else free_port()
        output = output or data.with_name(data.name + ".out")
        listen = () if command == "worker" else ("--port", str(port))
        with output.open("wb") as out:
            process = subprocess.Popen(
                [*ssftp_command(), command, "--config", str(config), "--data-dir", str(data),
                 *listen, *extra_args],
                env={**child_env(workdir), **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        server = cls(process, port, DataLayout.at(data), output)
        try:
            if command == "worker":
                server._wait_for_output("scan worker started")
            else:
                if command == "up":
                    server._wait_for_output("ssftp is up.")
                wait_for_banner(port, process, f"ssftp {command}", output)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_for_output(self, line: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while line not in self.output.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise StartError(f"ssftp did not print {line!r}:\n{_tail(self.output)}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Ctrl-C to the whole group, as a terminal would; SIGKILL if it does not stop."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
