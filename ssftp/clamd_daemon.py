"""Running our own clamd (Debian's ``clamav-daemon`` binary) with the project's clamd.conf.

Used by ``ssftp up`` when no clamd is configured, and by the tests. Without a real signature
database (no freshclam run, as on an offline machine) it loads the shipped EICAR test
signatures and says so loudly: such a clamd finds the test file and nothing else.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ssftp.clamd import ClamdAddress, ClamdClient
from ssftp.errors import ClamdStartError
from ssftp.logs import APP, log_event
from ssftp.processes import stop_child

logger = logging.getLogger(APP)

# Package data, so an installed ssftp finds them as a checkout does.
CLAMAV_FILES = Path(__file__).resolve().parent / "clamav"
TEST_SIGNATURES = CLAMAV_FILES / "test-signatures"
SYSTEM_DATABASE = Path("/var/lib/clamav")
CLAMD_BINARIES = ("/usr/sbin/clamd", "clamd")


def signature_database() -> tuple[Path, bool]:
    """(database directory, True when only the offline test signatures are available)."""
    if any(SYSTEM_DATABASE.glob("*.cvd")) or any(SYSTEM_DATABASE.glob("*.cld")):
        return SYSTEM_DATABASE, False
    return TEST_SIGNATURES, True


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


def socket_in(run_dir: Path) -> Path:
    """Where the clamd of ``run_dir`` listens."""
    return run_dir / "clamd.sock"


@dataclass
class ClamdDaemon:
    process: subprocess.Popen[bytes]
    run_dir: Path
    tcp_port: int | None

    @property
    def socket(self) -> Path:
        return socket_in(self.run_dir)

    @property
    def address(self) -> ClamdAddress:
        return ClamdAddress(unix_path=str(self.socket))

    @classmethod
    def start(cls, run_dir: Path, *, max_file_size: int = 100 * 1024 * 1024,
              tcp_port: int | None = None, database: Path | None = None,
              ready_timeout: float = 120.0) -> ClamdDaemon:
        run_dir.mkdir(parents=True, exist_ok=True)
        test_only = False
        if database is None:
            database, test_only = signature_database()
        if test_only:
            log_event(logger, "clamd has NO real signatures: using the offline EICAR test "
                      "signatures only; run freshclam for real protection", logging.WARNING,
                      database=str(database))
        conf = render_config(run_dir, database, max_file_size, tcp_port)
        socket_in(run_dir).unlink(missing_ok=True)
        process = subprocess.Popen([_binary(), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon = cls(process, run_dir, tcp_port)
        client = ClamdClient(daemon.address, timeout=5)
        deadline = time.monotonic() + ready_timeout
        while not client.ping():
            if process.poll() is not None or time.monotonic() > deadline:
                daemon.stop()
                raise ClamdStartError(f"clamd did not start: {daemon.log_tail()}")
            time.sleep(0.1)
        log_event(logger, "clamd started", socket=str(daemon.socket), tcp_port=tcp_port,
                  version=client.command("VERSION"))
        return daemon

    def log_tail(self, lines: int = 10) -> str:
        log = self.run_dir / "clamd.log"
        if not log.exists():
            return "(no log)"
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop_child(self.process, grace_seconds=15)
