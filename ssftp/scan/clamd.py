"""The clamd client: scan a file by path, by passing its descriptor, or by streaming it.

Every scan returns a :class:`Verdict` and never raises: a refused connection, a timeout, an
``ERROR`` reply or a reply this module cannot read all become a verdict that is not clean, so
no caller can turn a failure into "clean" by forgetting an ``except``. Only an ``OK`` reply
for the exact request is clean.

- ``scan_path``: clamd opens the file itself (it must see the same filesystem).
- ``scan_fd``: our open descriptor is passed over the Unix socket (FILDES); clamd needs no
  permission on the path, and the file cannot be swapped between our check and its scan.
- ``scan_stream``: INSTREAM in large chunks, for a clamd on another machine.

A scan that waits out the timeout is followed by a PING: a clamd that answers it was only slow
on this file (an error of the file, retried later); one that does not hangs, and the scans
after it fail at once instead of each waiting out a timeout of its own, until a PING is
answered again (the staging queue's outage probes).
"""

from __future__ import annotations

import array
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ssftp.addresses import ClamdAddress
from ssftp.config.schema import ScanMode
from ssftp.metrics import SIGNATURES, clamd_answered
from ssftp.scan.signatures import GENERATION_MARKER, Signatures, parse_generation, parse_version
from ssftp.scan.verdict import Verdict, VerdictKind, finding

DEFAULT_CHUNK = 1 << 20
# How long the signatures a verdict names may be taken as still loaded before clamd is asked
# again: a verdict names what was loaded at most this long before its scan began, so a
# database loaded meanwhile can only make the name older than the judge, never newer (and a
# file named with an older database is scanned again when the new one is seen).
SIGNATURES_CHECK_SECONDS = 30.0
# A clamd that does not answer PING within this is taken as not there (a blackholed host
# would otherwise hold a start, or an outage probe, for the whole scan timeout).
PING_TIMEOUT = 5.0
# STATS's line of clamd's threads: ``THREADS: live 1  idle 0 max 4 idle-timeout 30``.
_MAX_THREADS = re.compile(r"^THREADS:.*\bmax (\d+)", re.MULTILINE)


def parse_max_threads(stats: str) -> int | None:
    """How many files clamd scans at once (its ``MaxThreads``), as its ``STATS`` reply says;
    None when the reply does not say (another daemon, a changed format)."""
    match = _MAX_THREADS.search(stats)
    threads = int(match.group(1)) if match else 0
    return threads or None


def parse_reply(reply: bytes) -> Verdict:
    """Read one clamd reply line (``<name>: OK | <signature> FOUND | <message> ERROR``)."""
    text = reply.rstrip(b"\0\n").decode("utf-8", "replace")
    if text.endswith(" ERROR"):
        message = text.rsplit(": ", 1)[-1].removesuffix(" ERROR")
        if "size limit exceeded" in message:
            return Verdict(VerdictKind.UNSCANNABLE, message)
        return Verdict(VerdictKind.ERROR, f"clamd error: {message}")
    if ": " not in text:
        return Verdict(VerdictKind.ERROR, f"unreadable clamd reply: {text[:200]!r}")
    result = text.rsplit(": ", 1)[1]
    if result == "OK":
        return Verdict(VerdictKind.CLEAN, "OK")
    if result.endswith(" FOUND") and len(result) > len(" FOUND"):
        return finding(result.removesuffix(" FOUND"))
    return Verdict(VerdictKind.ERROR, f"unreadable clamd reply: {text[:200]!r}")


class ClamdClient:
    """One clamd, an :class:`~ssftp.scan.engines.Engine`."""

    name = "clamd"

    def __init__(self, address: ClamdAddress, *, timeout: float = 120.0,
                 max_file_size: int | None = None, chunk_size: int = DEFAULT_CHUNK,
                 max_scans: int | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.max_file_size = max_file_size
        self.chunk_size = chunk_size
        # The scans all workers together may run on it at once (``clamav.maxConcurrentScans``);
        # None: as many as it has threads (:meth:`scan_slots`).
        self.max_scans = max_scans
        # A scan timed out and clamd did not answer PING either (stopped, or stuck on a dead
        # share): the scans fail at once, as unreachable, until a PING is answered.
        self._hung = False
        self._lock = threading.Lock()
        self._loaded: tuple[float, Signatures] | None = None

    def __str__(self) -> str:
        return f"clamd at {self.address}"

    def _connect(self) -> socket.socket:
        if self.address.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = self.address.unix_path
        else:
            assert self.address.host is not None and self.address.port is not None
            sock = socket.socket(socket.AF_INET6 if ":" in self.address.host else socket.AF_INET)
            target = (self.address.host, self.address.port)
        sock.settimeout(self.timeout)
        try:
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _read_reply(sock: socket.socket) -> bytes:
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply

    def command(self, name: str) -> str:
        """A simple command (PING, VERSION); raises OSError when clamd cannot be reached."""
        with self._connect() as sock:
            sock.sendall(f"z{name}\0".encode())
            return self._read_reply(sock).rstrip(b"\0").decode()

    def signatures(self) -> Signatures:
        """The engine and database clamd has loaded now: its ``VERSION``, and the generation
        its answer on :data:`GENERATION_MARKER` names (:mod:`ssftp.scan.signatures`). Raises
        OSError when clamd cannot be reached or answers neither."""
        # Asked as PING is: a hung clamd must not hold up the scan that asks first for the
        # whole scan timeout.
        probe_client = self._prober()
        reply = probe_client.command("VERSION")
        with probe_client._connect() as sock:
            sock.sendall(b"zINSTREAM\0" + struct.pack(">I", len(GENERATION_MARKER))
                         + GENERATION_MARKER + struct.pack(">I", 0))
            probe = parse_reply(probe_client._read_reply(sock))
        if probe.kind is VerdictKind.ERROR:
            raise OSError(f"clamd at {self.address} could not scan the generation marker: "
                          f"{probe.detail}")
        loaded = parse_version(reply, parse_generation(probe.signature))
        SIGNATURES.loaded(loaded.engine, loaded.database, loaded.daily,
                          None if loaded.built is None else loaded.built.timestamp())
        with self._lock:
            self._loaded = (time.monotonic(), loaded)
        return loaded

    @property
    def last_signatures(self) -> Signatures | None:
        """What the last look at the loaded signatures found, however old; None before one."""
        with self._lock:
            return None if self._loaded is None else self._loaded[1]

    def loaded_signatures(self) -> Signatures | None:
        """The signatures a scan starting now is judged by, as last seen, asked again once
        that is :data:`SIGNATURES_CHECK_SECONDS` old; None when clamd cannot say (a clamd that
        is down fails its scans anyway)."""
        with self._lock:
            seen = self._loaded
        if self._hung:  # its scans fail at once, unasked; so does this
            return None
        if seen is not None and time.monotonic() - seen[0] < SIGNATURES_CHECK_SECONDS:
            return seen[1]
        try:
            return self.signatures()
        except OSError:
            return None

    def _prober(self) -> ClamdClient:
        """A client for one quick question (PING, VERSION, the generation marker): answered at
        once by a clamd that works, so it waits PING_TIMEOUT at most."""
        return ClamdClient(self.address, timeout=min(PING_TIMEOUT, self.timeout))

    def ping(self) -> bool:
        """True when clamd answers PONG within ``PING_TIMEOUT`` (or the scan timeout, if
        shorter): PING is answered at once, so a longer wait would only hold up the caller.
        The answer is ``ssftp_clamd_up`` for this address: every PING (at start, during an
        outage, after a restart, at each /healthz) is what the process knows of clamd, with no
        poll of its own."""
        try:
            answered = self._prober().command("PING") == "PONG"
        except OSError:
            answered = False
        clamd_answered(str(self.address), answered)
        if answered:
            self._hung = False
        return answered

    def max_threads(self) -> int | None:
        """clamd's ``MaxThreads`` (asked with ``STATS``, as PING is: at most
        :data:`PING_TIMEOUT`); None when it cannot be reached or does not say."""
        try:
            return parse_max_threads(self._prober().command("STATS"))
        except OSError:
            return None

    def scan_slots(self) -> int | None:
        """The scans all workers together may run on this clamd at once (the slots of its
        Prefect concurrency limit, :mod:`flows.clamd_budget`): as configured, else its
        threads; None when neither is known. More would only queue inside clamd, where a
        queued scan's wait counts against its timeout."""
        return self.max_scans or self.max_threads()

    def over_limit(self, size: int) -> Verdict | None:
        """The verdict on a file of ``size`` bytes that is over ``max_file_size``: decided
        before a byte is read (a sparse upload can claim terabytes), never clean."""
        if self.max_file_size is not None and size > self.max_file_size:
            return Verdict(VerdictKind.UNSCANNABLE,
                           f"{size} bytes is over the scan limit of {self.max_file_size}")
        return None

    def _scan(self, path: Path, send: Callable[[socket.socket, Path], None]) -> Verdict:
        try:
            if (limited := self.over_limit(path.stat().st_size)) is not None:
                return limited
            if self._hung:
                return Verdict(VerdictKind.ERROR, f"clamd at {self.address} hangs: a scan "
                               "timed out and it did not answer PING", unreachable=True)
            try:
                sock = self._connect()
            except TimeoutError:  # a full listen backlog: clamd has stopped accepting
                return self._timed_out()
            except OSError as exc:
                return Verdict(VerdictKind.ERROR,
                               f"cannot scan with clamd at {self.address}: {exc}",
                               unreachable=True)
            with sock:
                send(sock, path)
                return parse_reply(self._read_reply(sock))
        except TimeoutError:
            return self._timed_out()
        except OSError as exc:
            return Verdict(VerdictKind.ERROR, f"cannot scan with clamd at {self.address}: {exc}")

    def _timed_out(self) -> Verdict:
        """A scan waited ``timeout`` for clamd: a file clamd is slow on (it still answers PING:
        an error of this file, retried), or clamd hangs (no answer to PING: an outage)."""
        waited = f"clamd at {self.address} timed out after {self.timeout:g} s"
        if self.ping():
            return Verdict(VerdictKind.ERROR, waited, timed_out=True)
        self._hung = True
        return Verdict(VerdictKind.ERROR, f"{waited} and does not answer PING",
                       unreachable=True, timed_out=True)

    def scan(self, path: Path, mode: ScanMode = "auto") -> Verdict:
        """Scan the way ``mode`` says; ``auto`` passes the descriptor over a Unix socket
        (clamd then needs no access to our directories) and streams over TCP."""
        if mode == "auto":
            mode = "fd" if self.address.unix_path else "stream"
        if mode == "path":
            return self.scan_path(path)
        if mode == "fd":
            return self.scan_fd(path)
        return self.scan_stream(path)

    def scan_path(self, path: Path) -> Verdict:
        return self._scan(path, self._send_path)

    def scan_fd(self, path: Path) -> Verdict:
        return self._scan(path, self._send_fd)

    def scan_stream(self, path: Path) -> Verdict:
        return self._scan(path, self._send_stream)

    @staticmethod
    def _send_path(sock: socket.socket, path: Path) -> None:
        sock.sendall(b"zSCAN " + os.fsencode(path.absolute()) + b"\0")

    @staticmethod
    def _send_fd(sock: socket.socket, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sock.sendall(b"zFILDES\0")
            fds = array.array("i", [fd])
            sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        finally:
            os.close(fd)

    def _send_stream(self, sock: socket.socket, path: Path) -> None:
        sock.sendall(b"zINSTREAM\0")
        with path.open("rb") as handle:
            while chunk := handle.read(self.chunk_size):
                try:
                    sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # clamd hung up (e.g. StreamMaxLength): its reply says why
        sock.sendall(struct.pack(">I", 0))
