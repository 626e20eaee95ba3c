"""A real ICAP server for tests: Debian's c-icap with its virus_scan service, in front of a clamd
the test already runs (``clamd_mod`` passes each file to clamd's Unix socket as a descriptor).

Everything of its own is under its run directory (config, pid file, commands socket, logs,
temporary files) and it listens on 127.0.0.1 on a port of its own, so several can run at once
beside a system c-icap. It runs in the foreground (``-N``) in a session of its own, so that
stopping or killing it takes its worker processes too.

c-icap answers 204 to everything when its engine is missing (a clamd that could not be reached
when it started leaves virus_scan without an engine), so a start is only done once EICAR sent
through it comes back infected: a c-icap that would call every file clean fails the start.

It runs as whoever runs the tests (root here: c-icap stays root when its config names no
``User``, and root can use clamd's socket; another user needs to own the clamd too, as the
session's clamd is started by the same user).
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ssftp.addresses import IcapAddress
from ssftp.scan.icap import IcapClient
from ssftp.scan.verdict import VerdictKind
from testkit.files import EICAR
from testkit.openssh_server import free_port
from tests.support.waiting import wait_for

BINARY = "/usr/bin/c-icap"
MAGIC = Path("/etc/c-icap/c-icap.magic")
# The service path the tests scan through: virus_scan with 204s allowed, no size limit of its
# own (clamd's limits decide), one answer at the end (no data trickled out before the verdict).
SERVICE = "/avscan"
# Every group of c-icap.magic and its built-in TEXT and DATA: a type left out would be passed
# with a 204, unscanned.
SCAN_FILE_TYPES = "TEXT DATA EXECUTABLE ARCHIVE DOCUMENT GRAPHICS STREAM"


def modules_dir() -> Path:
    """Where Debian put c-icap's modules and services (per architecture)."""
    found = sorted(glob.glob("/usr/lib/*/c_icap/virus_scan.so"))
    if not found:
        raise RuntimeError("c-icap's virus_scan service is not installed (Debian package "
                           "libc-icap-mod-virus-scan; scripts/bootstrap.sh installs it)")
    return Path(found[0]).parent


def render_config(run_dir: Path, port: int, clamd_socket: Path) -> Path:
    """c-icap.conf for ``run_dir``, scanning with the clamd at ``clamd_socket``."""
    modules = modules_dir()
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    conf = run_dir / "c-icap.conf"
    conf.write_text(f"""\
PidFile {run_dir / "c-icap.pid"}
CommandsSocket {run_dir / "c-icap.ctl"}
Port 127.0.0.1:{port}
Timeout 300
KeepAliveTimeout 600
MaxKeepAliveRequests 100
StartServers 1
MaxServers 2
MinSpareThreads 2
MaxSpareThreads 8
ThreadsPerChild 8
MaxRequestsPerChild 0
TmpDir {run_dir / "tmp"}
MaxMemObject 131072
DebugLevel 1
Pipelining on
ModulesDir {modules}
ServicesDir {modules}
TemplateDir /usr/share/c_icap/templates/
TemplateDefaultLanguage en
LoadMagicFile {MAGIC}
ServerLog {run_dir / "server.log"}
AccessLog {run_dir / "access.log"}
Module common clamd_mod.so
clamd_mod.ClamdSocket {clamd_socket}
Service virus_scan_module virus_scan.so
ServiceAlias {SERVICE.lstrip("/")} virus_scan?allow204=on&sizelimit=off&mode=simple
virus_scan.DefaultEngine clamd
virus_scan.ScanFileTypes {SCAN_FILE_TYPES}
virus_scan.MaxObjectSize 1024M
virus_scan.SendPercentData 0
virus_scan.PassOnError off
virus_scan.Allow204Responces on
""")
    return conf


def options_answered(port: int) -> bool:
    """c-icap answers OPTIONS on ``port`` with 200 (asked directly: the client's ping would
    export ``ssftp_icap_up`` for it, which the tests read)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"OPTIONS icap://127.0.0.1:{port}{SERVICE} ICAP/1.0\r\n"
                         f"Host: 127.0.0.1:{port}\r\nEncapsulated: null-body=0\r\n\r\n".encode())
            return sock.recv(64).startswith(b"ICAP/1.0 200")
    except OSError:
        return False


@dataclass
class CIcap:
    run_dir: Path
    port: int
    conf: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"icap://127.0.0.1:{self.port}{SERVICE}"

    @property
    def server(self) -> IcapAddress:
        return IcapAddress.parse(self.url)

    @classmethod
    def start(cls, run_dir: Path, clamd_socket: Path, *, checked: bool = True) -> CIcap:
        """Start c-icap scanning with the clamd at ``clamd_socket``; return once it answers
        OPTIONS and (``checked``) has found EICAR (fails the test otherwise, with the end of
        its logs). Unchecked, it may be blind: started without its clamd, it calls every file
        clean."""
        run_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = render_config(run_dir, port, clamd_socket)
        icap = cls(run_dir, port, conf, _spawn(conf, run_dir))
        try:
            icap._until_ready(checked)
        except BaseException:
            icap._signal(signal.SIGKILL)
            icap.process.wait()
            raise
        return icap

    def _until_ready(self, checked: bool = True) -> None:
        def answering() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"c-icap exited ({self.process.returncode}) at start: "
                                   f"{self.log_tail()}")
            return options_answered(self.port)

        wait_for("c-icap to answer OPTIONS", answering, details=self.log_tail)
        if not checked:
            return
        verdict = IcapClient([self.server], timeout=60).scan(
            _eicar_file(self.run_dir / "tmp" / "self-check-eicar.com"))
        if verdict.kind is not VerdictKind.INFECTED:
            raise RuntimeError(f"c-icap at {self.url} did not find EICAR ({verdict}): its "
                               "clamd was probably unreachable when it started, and it would "
                               f"call every file clean. {self.log_tail()}")

    def restart(self) -> None:
        """Start it again after a stop or kill, on the same port and config."""
        if self.process.poll() is None:
            self.stop()
        self.process = _spawn(self.conf, self.run_dir)
        try:
            self._until_ready()
        except BaseException:
            self._signal(signal.SIGKILL)
            self.process.wait()
            raise

    def stop(self) -> None:
        """SIGTERM to its whole session, then wait (SIGKILL after a grace period)."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self._until_closed()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.process.wait()
        self._until_closed()

    def _signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _until_closed(self) -> None:
        # Its children leave with it: wait until none holds the port, so that "stopped" is
        # a refused connection, not a listener about to go.
        wait_for(f"c-icap's port {self.port} to close", lambda: not _listening(self.port),
                 details=self.log_tail)

    def log_tail(self, lines: int = 20) -> str:
        """The end of its server log and console, as one string."""
        parts = []
        for name in ("server.log", "console.log"):
            path = self.run_dir / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"{name}: " + " | ".join(line.strip() for line in text))
        return "\n".join(parts) or "(c-icap wrote nothing)"


def _spawn(conf: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    for leftover in ("c-icap.pid", "c-icap.ctl"):
        (run_dir / leftover).unlink(missing_ok=True)
    with (run_dir / "console.log").open("ab") as console:
        return subprocess.Popen([BINARY, "-N", "-f", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=console, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _eicar_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(EICAR)
    return path
