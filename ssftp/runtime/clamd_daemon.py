"""Running our own clamd (Debian's ``clamav-daemon`` binary) with the project's clamd.conf.

Used by ``ssftp up`` when no clamd is configured (on the data root's own signature database,
:mod:`ssftp.scan.database`), and by the tests. Without the official databases (no freshclam
run, as on an offline machine) it says so loudly: such a clamd finds the EICAR test file and
custom signatures, nothing else.

``ssftp up`` keeps its clamd running (:func:`supervise`): a clamd that dies (a crash, the OOM
killer) is reaped and started again after a backoff of its own, or scanning would stop for
good while uploads pile up in staging. Its console (stdout and stderr) is read through a pipe
and only its last lines are kept, in memory (``ssftp.runtime.children.ConsoleTail``): the reason a
start fails (``Failed to lock the log file``) is printed there, before its log is open, and
they end the start error and the 'clamd died' line. Not a file: a clamd in the foreground
echoes every log line on its console, so a console file would double clamd.log and grow past
clamd's own cap (``LogFileMaxSize``, 1 MB) for as long as clamd runs; and these lines are this
clamd's only, never an earlier one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ssftp.addresses import ClamdAddress
from ssftp.errors import ClamdStartError
from ssftp.layout import CLAMD_SOCKET
from ssftp.logs import APP, log_event
from ssftp.retry_schedule import backoff_delay
from ssftp.runtime.children import (
    CONSOLE_SETTLE_SECONDS,
    ConsoleTail,
    describe_exit,
    spawn_with_console,
    stop_child,
)
from ssftp.runtime.pid_files import record_pid, stop_leftover
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import official_files

logger = logging.getLogger(APP)

# Package data, so an installed ssftp finds it as a checkout does.
CLAMAV_FILES = Path(__file__).resolve().parents[1] / "clamav"
CLAMD_BINARIES = ("/usr/sbin/clamd", "clamd")


def _binary() -> str:
    for candidate in CLAMD_BINARIES:
        found = shutil.which(candidate)
        if found:
            return found
    raise ClamdStartError("clamd is not installed (Debian package clamav-daemon)")


def render_config(run_dir: Path, database: Path, max_file_size: int,
                  tcp_port: int | None) -> Path:
    """Write clamd.conf for a run directory from the project's template."""
    values = {
        "@SOCKET@": str(socket_in(run_dir)),
        "@TCP@": f"TCPSocket {tcp_port}\nTCPAddr 127.0.0.1" if tcp_port is not None else "",
        "@DATABASE@": str(database),
        "@TMPDIR@": str(run_dir / "tmp"),
        "@LOGFILE@": str(run_dir / "clamd.log"),
        "@MAXSIZE@": str(max_file_size),
    }
    text = (CLAMAV_FILES / "clamd.conf").read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    conf = run_dir / "clamd.conf"
    conf.write_text(text)
    return conf


def clamd_argv(conf: Path) -> list[str]:
    """The command line of a clamd with ``conf``: a start after a crash knows it by this."""
    return [_binary(), "-c", str(conf)]


def is_clamd(argv: list[str]) -> bool:
    return bool(argv) and Path(argv[0]).name == "clamd"


def clear_stale_socket(path: Path) -> None:
    """Remove the socket a dead clamd left, only once nothing answers on it: a live clamd
    keeps its socket (a new one could not bind, and would take it away from its clients)."""
    if not path.exists():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)
            return
    raise ClamdStartError(f"{path} already answers: another clamd runs on this directory "
                          "(not one that this data root's pid file names); stop it first")


def socket_in(run_dir: Path) -> Path:
    """Where the clamd of ``run_dir`` listens."""
    return run_dir / CLAMD_SOCKET


@dataclass
class ClamdDaemon:
    process: subprocess.Popen[bytes]
    # The last lines the current clamd printed.
    console: ConsoleTail
    run_dir: Path
    tcp_port: int | None
    # Where the current clamd is recorded, so a start after a SIGKILL can stop it.
    pid_file: Path | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def socket(self) -> Path:
        return socket_in(self.run_dir)

    @property
    def conf(self) -> Path:
        return self.run_dir / "clamd.conf"

    @property
    def log(self) -> Path:
        return self.run_dir / "clamd.log"

    @property
    def address(self) -> ClamdAddress:
        return ClamdAddress(unix_path=str(self.socket))

    @classmethod
    def start(cls, run_dir: Path, *, database: Path, max_file_size: int = 100 * 1024 * 1024,
              tcp_port: int | None = None, ready_timeout: float = 120.0,
              pid_file: Path | None = None) -> ClamdDaemon:
        """Start clamd on the signatures in ``database`` and wait until it answers. With
        ``pid_file``, first stop the clamd that a killed predecessor recorded there (it holds
        the log's lock and the socket)."""
        run_dir.mkdir(parents=True, exist_ok=True)
        if not official_files(database):
            log_event(logger, "clamd has NO official signatures: it finds the offline EICAR "
                      "test file and custom signatures only; `ssftp update-signatures` "
                      "fetches the official ones", logging.WARNING, database=str(database))
        conf = render_config(run_dir, database, max_file_size, tcp_port)
        if pid_file is not None and (left := stop_leftover(
                pid_file, is_clamd, what="clamd", error=ClamdStartError, grace_seconds=15)):
            log_event(logger, "stopped the clamd a killed ssftp left running", logging.WARNING,
                      pid=left.pid, pid_file=str(pid_file))
        daemon = cls(*_spawn(conf, run_dir), run_dir, tcp_port, pid_file)
        daemon._record()
        daemon.wait_ready(ready_timeout)
        return daemon

    def respawn(self) -> None:
        """Start a new clamd in place of the one that exited (same config, socket, log)."""
        self.started_at = time.monotonic()
        self.process, self.console = _spawn(self.conf, self.run_dir)
        self._record()

    def _record(self) -> None:
        if self.pid_file is not None:
            record_pid(self.pid_file, self.process.pid)

    def wait_ready(self, ready_timeout: float) -> None:
        client = ClamdClient(self.address, timeout=5)
        deadline = time.monotonic() + ready_timeout
        while not client.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ClamdStartError(f"clamd did not start: {self.console_tail()}")
            time.sleep(0.1)
        log_event(logger, "clamd started", socket=str(self.socket), tcp_port=self.tcp_port,
                  pid=self.process.pid, version=client.command("VERSION"))

    def console_tail(self, lines: int = 10) -> str:
        """The last ``lines`` this clamd printed, as one line."""
        settle = CONSOLE_SETTLE_SECONDS if self.process.poll() is not None else 0.0
        return " | ".join(self.console.last(lines, settle_seconds=settle)) or \
            "(nothing on its console)"

    def stop(self) -> None:
        stop_child(self.process, grace_seconds=15)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)


def _spawn(conf: Path, run_dir: Path) -> tuple[subprocess.Popen[bytes], ConsoleTail]:
    clear_stale_socket(socket_in(run_dir))
    return spawn_with_console(clamd_argv(conf))


@dataclass
class RestartBackoff:
    """How long to wait before starting clamd again: ``first_seconds``, doubling up to
    ``longest_seconds`` while it keeps dying (a clamd that cannot start must not take the
    machine), and from ``first_seconds`` again once one ran ``stable_after_seconds``."""

    first_seconds: float = 1.0
    longest_seconds: float = 60.0
    stable_after_seconds: float = 300.0
    _failures: int = 0

    def next_delay(self, ran_seconds: float) -> float:
        if ran_seconds >= self.stable_after_seconds:
            self._failures = 0
        self._failures += 1
        return backoff_delay(self._failures, self.first_seconds, self.longest_seconds)


async def supervise(daemon: ClamdDaemon, backoff: RestartBackoff | None = None,
                    poll_seconds: float = 0.5) -> None:
    """Keep ``daemon``'s clamd running until cancelled: reap it when it exits, log how it
    ended with the end of its log, and start it again after the backoff. Polling (not a thread
    blocked in ``wait``): a cancel at shutdown leaves nothing behind."""
    backoff = backoff or RestartBackoff()
    while True:
        while (code := daemon.process.poll()) is None:
            await asyncio.sleep(poll_seconds)
        ran = time.monotonic() - daemon.started_at
        delay = backoff.next_delay(ran)
        log_event(logger, "clamd died", logging.ERROR, exit=describe_exit(code),
                  pid=daemon.process.pid, ran_seconds=round(ran, 1), restart_in_seconds=delay,
                  log_tail=daemon.console_tail())
        while not await _respawn_after(daemon, delay):
            delay = backoff.next_delay(ran_seconds=0)
        await _until_answering(daemon, poll_seconds)


async def _respawn_after(daemon: ClamdDaemon, delay: float) -> bool:
    """Respawn off the event loop (it writes the pid file durably). A cancel waits for a
    respawn under way, so that whoever cancelled stops the clamd it started, not the last."""
    await asyncio.sleep(delay)
    respawn = asyncio.ensure_future(asyncio.to_thread(daemon.respawn))
    try:
        await asyncio.shield(respawn)
    except asyncio.CancelledError:
        with contextlib.suppress(ClamdStartError, OSError):
            await respawn
        raise
    except (ClamdStartError, OSError) as exc:  # e.g. something else took the socket
        log_event(logger, "clamd restart failed", logging.ERROR, error=str(exc))
        return False
    return True


async def _until_answering(daemon: ClamdDaemon, poll_seconds: float) -> None:
    """Log when the new clamd answers (loading signatures takes a while); return early when
    it exits instead, for :func:`supervise` to see."""
    client = ClamdClient(daemon.address, timeout=5)
    while daemon.process.poll() is None:
        if await asyncio.to_thread(client.ping):
            log_event(logger, "clamd restarted", pid=daemon.process.pid,
                      socket=str(daemon.socket))
            return
        await asyncio.sleep(poll_seconds)
