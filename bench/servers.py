"""The servers a benchmark run compares, each started on 127.0.0.1 in the run's own directory.

- ssftp as users run it: ``ssftp serve`` for the SFTP figures (the process whose memory is
  measured), ``ssftp up`` for the pipeline figures (server, watcher, Prefect, all of it).
- OpenSSH's sshd with ``internal-sftp``, its config, keys and log in a temp directory
  (``tests/openssh_server.py``, shared with the tests so both know one way to run it).
- clamd with the project's clamd.conf; ``ssftp up`` is pointed at the same clamd the raw
  reference scans with, so both pipelines use one engine with one signature set.

Every process is started in its own session and stopped with its whole group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from ssftp.layout import DataLayout
from testkit.openssh_server import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
UPLOADER = "bench-up"
DOWNLOADER = "bench-down"
ACCOUNT_DIRECTORY = "bench"


class BenchSetupError(RuntimeError):
    """A server of the benchmark could not be started; the message says which and why."""


def ssftp_command() -> list[str]:
    """The ``ssftp`` entry point of the Python running the benchmark (the project's venv)."""
    beside = Path(sys.executable).with_name("ssftp")
    if beside.exists():
        return [str(beside)]
    if found := shutil.which("ssftp"):
        return [found]
    raise BenchSetupError("the ssftp command is not installed (run ./test or scripts/bootstrap.sh)")


def child_env(workdir: Path) -> dict[str, str]:
    """No Prefect server or profile of the caller's: ``ssftp up`` starts its own, offline."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_HOME=str(workdir / "prefect-home"))
    return env


def bench_config(public_key: str, clamd_socket: Path | None = None) -> str:
    """ssftp.yaml for the run: one staging account to upload to, one clean account to read.

    Everything else keeps its default, fsyncUploads included: the figures are those of ssftp as
    shipped. Except the connection limits: the memory workload holds 100 idle sessions of one
    account from one address, which the defaults (20 per account, 50 per address) refuse, as
    they should for a real partner.
    """
    clamav = f"clamav:\n  address: {clamd_socket}\n" if clamd_socket else ""
    return textwrap.dedent(f"""\
        sftpPort: 0
        instanceName: bench
        limits:
          maxConnectionsPerAccount: 200
          maxConnectionsPerAddress: 200
        users:
          stagingDir:
            - directory: {ACCOUNT_DIRECTORY}
              auth:
                username: {UPLOADER}
                publicKey: "{public_key}"
          cleanDir:
            - directory: {ACCOUNT_DIRECTORY}
              allowDelete: true
              auth:
                username: {DOWNLOADER}
                publicKey: "{public_key}"
        """) + clamav


def wait_for_banner(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchSetupError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), \
                socket.create_connection((HOST, port), timeout=2) as sock:
            if sock.recv(64).startswith(b"SSH-2.0-"):
                return
        time.sleep(0.05)
    raise BenchSetupError(f"{what} sent no SSH banner on port {port}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no output: {exc})"


@dataclass
class SsftpProcess:
    """``ssftp serve`` or ``ssftp up`` on a chosen port, output in ``<data>.out``."""

    process: subprocess.Popen[bytes]
    port: int
    layout: DataLayout
    output: Path

    @classmethod
    def start(cls, command: str, workdir: Path, config: Path, data: Path,
              extra_args: tuple[str, ...] = ()) -> SsftpProcess:
        port = free_port()
        output = data.with_name(data.name + ".out")
        with output.open("wb") as out:
            process = subprocess.Popen(
                [*ssftp_command(), command, "--config", str(config), "--data-dir", str(data),
                 "--port", str(port), *extra_args],
                env=child_env(workdir), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        server = cls(process, port, DataLayout.at(data), output)
        try:
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
                raise BenchSetupError(f"ssftp did not print {line!r}:\n{_tail(self.output)}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def staging_root(self) -> Path:
        """Where ``bench-up`` uploads land."""
        return self.layout.staging / ACCOUNT_DIRECTORY

    @property
    def clean_root(self) -> Path:
        """What ``bench-down`` sees, and where scanned uploads end up."""
        return self.layout.clean / ACCOUNT_DIRECTORY

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
