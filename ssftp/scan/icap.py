"""An ICAP (RFC 3507) client, so that files can be judged by the scanners an organisation
already runs behind ICAP (a c-icap in front of clamd, a commercial appliance) as well as, or
instead of, our own clamd.

The PyPI ICAP clients have been abandoned for years, and the part of the protocol a gateway
needs is small: OPTIONS, and RESPMOD with the file as the body of an HTTP response. This module
speaks only that, over plain sockets.

It is a security boundary, so it fails closed the way :mod:`ssftp.scan.clamd` does: ``scan``
never raises, and only two answers are clean: ``204`` (the server saw the file and had nothing
to change), or ``200`` returning the very bytes we sent (same length and SHA-256) under an HTTP
``200``. A threat header (``X-Infection-Found``, ``X-Violations-Found``, ``X-Virus-ID``) is read
through :func:`~ssftp.scan.verdict.finding`, so that an encrypted archive reported by the
server is unscannable, as it is from clamd. A server that changed the body without naming a
threat has still objected to the file: infected, ``icap.modified``. Every other outcome (a 4xx
or 5xx, a timeout, a reset, a reply we cannot read, a 204 to a body we had not finished
sending) is an error naming the server, and the file is scanned again later.

The servers form a pool tried in order, for availability rather than load: a server that
cannot be connected to is skipped for this file, and a file no server could be connected to
is ``unreachable`` (an outage the staging queue waits out, as for clamd). A server that takes
a file and then hangs is asked OPTIONS; if that goes unanswered too, it is skipped without
waiting until a :meth:`IcapClient.ping` sees it answer again, so a hung server does not cost
every file a full timeout.

A server can also answer without looking: c-icap whose clamd was away when it started answers
``204`` to everything, the EICAR test file included, while its OPTIONS still says 200; a server
set to pass on errors does the same. Nothing in such an answer tells it from a real "clean", so
each server is shown the EICAR test file before it judges a file, at most every
:data:`CANARY_SECONDS` (and at each :meth:`IcapClient.ping`): one that does not find it is
*blind*, skipped like a server that cannot be reached, and its ``ssftp_icap_up`` is 0.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ssftp.addresses import IcapAddress
from ssftp.config.schema import ScanMode
from ssftp.metrics import icap_answered
from ssftp.scan.signatures import Signatures
from ssftp.scan.verdict import Verdict, VerdictKind, finding, worst

DEFAULT_CHUNK = 1 << 16
# OPTIONS is answered at once by a server that works: a longer wait only holds up a start, an
# outage probe or /healthz (as clamd.py's PING_TIMEOUT).
PING_TIMEOUT = 5.0
# Connecting is quick or it fails: a blackholed first server must not cost every file the
# whole scan timeout before the next server is tried.
CONNECT_TIMEOUT = 5.0
# How long an OPTIONS answer is used when the server names no Options-TTL.
DEFAULT_OPTIONS_TTL = 3600.0
# The signature of a file whose body the server changed without naming a threat.
MODIFIED = "icap.modified"
# Headers ICAP servers name a threat in, besides X-Infection-Found and X-Violations-Found.
VIRUS_NAME_HEADERS = ("x-virus-id", "x-virus-name", "x-infection-name")
# How often a server must show it still finds the EICAR test file (a 68-byte RESPMOD): a blind
# server is found within this, and the cost is one tiny scan a minute per server.
CANARY_SECONDS = 60.0
# The EICAR test file, which every anti-virus engine reports by design; written in two halves
# so that this source file is not itself reported by a scanner on a developer's machine.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
# Longest status or header line accepted: a reply that is not ICAP is not read to the end.
MAX_LINE = 65536
MAX_HEADERS = 200


class _ProtocolError(Exception):
    """The server's reply is not ICAP as this client understands it."""


@dataclass(frozen=True)
class IcapOptions:
    """What a server's OPTIONS said (RFC 3507 4.10.2), kept until ``expires`` (monotonic)."""

    preview: int | None
    max_connections: int | None
    istag: str | None
    expires: float


@dataclass
class _ServerState:
    options: IcapOptions | None = None
    # A scan timed out and OPTIONS went unanswered: skipped until a ping sees it answer.
    hung: bool = False
    # When the server last found the EICAR test file (monotonic), and whether it then said
    # clean instead: blind until it finds it again.
    canary_at: float | None = None
    blind: bool = False
    in_flight: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)


@dataclass
class _Reply:
    status: int
    reason: str
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Unreachable(Exception):
    """The server could not be connected to: the next one is tried."""


class _Failed(Exception):
    """This file's scan on a server failed: the verdict is an error naming why."""

    def __init__(self, detail: str, *, timed_out: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.timed_out = timed_out


class _Reader:
    """Buffered reading of a socket, every line bounded."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(DEFAULT_CHUNK)
        if not data:
            raise _ProtocolError("the server closed the connection mid-reply")
        self.buffer += data

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_LINE:
                raise _ProtocolError("a reply line is too long")
            self._fill()
        line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _read_headers(reader: _Reader) -> dict[str, str]:
    """Header lines up to the empty line, names lower-cased; folded lines (RFC 822 style, as
    X-Violations-Found is sent) are joined to their header with a newline."""
    headers: dict[str, str] = {}
    last: str | None = None
    for _ in range(MAX_HEADERS):
        raw = reader.line()
        if not raw:
            return headers
        text = raw.decode("latin-1")
        if text[0] in " \t":
            if last is None:
                raise _ProtocolError("a folded header line comes first")
            headers[last] += "\n" + text.strip()
            continue
        name, colon, value = text.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise _ProtocolError(f"unreadable header line {text[:100]!r}")
        last = name.lower()
        headers[last] = (f"{headers[last]}, {value.strip()}" if last in headers
                         else value.strip())
    raise _ProtocolError("too many header lines")


def _read_reply(reader: _Reader) -> _Reply:
    first = reader.line().decode("latin-1")
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("ICAP/1.") or len(code) != 3 or not code.isdigit():
        raise _ProtocolError(f"not an ICAP status line: {first[:100]!r}")
    return _Reply(int(code), reason.strip(), _read_headers(reader))


def _encapsulated(reply: _Reply) -> list[tuple[str, int]]:
    """The ``Encapsulated`` header's sections, in order, offsets checked."""
    value = reply.header("Encapsulated")
    if value is None:
        raise _ProtocolError(f"a {reply.status} reply without an Encapsulated header")
    sections: list[tuple[str, int]] = []
    for item in value.split(","):
        name, equals, offset = item.strip().partition("=")
        if not equals or not offset.strip().isdigit():
            raise _ProtocolError(f"unreadable Encapsulated header {value[:100]!r}")
        sections.append((name.strip().lower(), int(offset)))
    offsets = [offset for _, offset in sections]
    if offsets != sorted(offsets) or (offsets and offsets[0] != 0):
        raise _ProtocolError(f"unreadable Encapsulated header {value[:100]!r}")
    return sections


def threat_names(headers: dict[str, str]) -> list[str]:
    """The threats a reply's headers name: ``Threat=<name>;`` of X-Infection-Found, the
    threat lines of X-Violations-Found (count, then four lines per violation: file name,
    threat, id, disposition), and X-Virus-ID style headers."""
    names: list[str] = []
    if (infection := headers.get("x-infection-found")) is not None:
        for field_ in infection.replace("\n", " ").split(";"):
            key, equals, value = field_.strip().partition("=")
            if equals and key.strip().lower() == "threat" and value.strip():
                names.append(value.strip())
    if (violations := headers.get("x-violations-found")) is not None:
        lines = [line.strip() for line in violations.split("\n")]
        for start in range(1, len(lines), 4):
            if start + 1 < len(lines) and lines[start + 1]:
                names.append(lines[start + 1])
    for header in VIRUS_NAME_HEADERS:
        named = headers.get(header, "").strip()
        if named not in ("", "-"):
            names.append(named)
    return list(dict.fromkeys(names))


class IcapClient:
    """A pool of ICAP servers, tried in order: an :class:`~ssftp.scan.engines.Engine`."""

    name = "icap"

    def __init__(self, servers: Sequence[IcapAddress], *, timeout: float = 120.0,
                 max_file_size: int | None = None, chunk_size: int = DEFAULT_CHUNK) -> None:
        if not servers:
            raise ValueError("at least one ICAP server is needed")
        self.servers = tuple(servers)
        self.timeout = timeout
        self.max_file_size = max_file_size
        self.chunk_size = chunk_size
        self._states = {server: _ServerState() for server in self.servers}
        self._istag: str | None = None
        self._istag_lock = threading.Lock()

    @property
    def istag(self) -> str | None:
        """The ISTag (the server's service version) last seen in any answer, for logs."""
        with self._istag_lock:
            return self._istag

    def _saw(self, reply: _Reply) -> None:
        if (istag := reply.header("ISTag")) is not None:
            with self._istag_lock:
                self._istag = istag.strip()

    # --- connections and OPTIONS ---------------------------------------------------------

    def _connect(self, server: IcapAddress, timeout: float) -> socket.socket:
        """A connection to ``server``; raises _Unreachable when none can be made."""
        try:
            sock = socket.create_connection((server.host, server.port),
                                            timeout=min(CONNECT_TIMEOUT, timeout))
        except OSError as exc:
            raise _Unreachable(f"{server.url}: cannot connect: {exc}") from exc
        sock.settimeout(timeout)
        return sock

    def _request_line(self, method: str, server: IcapAddress) -> bytes:
        host = f"[{server.host}]" if ":" in server.host else server.host
        return (f"{method} icap://{host}:{server.port}{server.service} ICAP/1.0\r\n"
                f"Host: {host}:{server.port}\r\nUser-Agent: ssftp\r\n").encode()

    def _options(self, server: IcapAddress, timeout: float) -> IcapOptions:
        """Ask OPTIONS; raises _Unreachable, _Failed, OSError or _ProtocolError."""
        with self._connect(server, timeout) as sock:
            sock.sendall(self._request_line("OPTIONS", server)
                         + b"Encapsulated: null-body=0\r\nConnection: close\r\n\r\n")
            reader = _Reader(sock)
            reply = _read_reply(reader)
        self._saw(reply)
        if reply.status != 200:
            raise _Failed(f"{server.url}: OPTIONS answered {reply.status} {reply.reason}")
        options = IcapOptions(
            preview=_number(reply.header("Preview")),
            max_connections=_number(reply.header("Max-Connections")),
            istag=reply.header("ISTag"),
            expires=time.monotonic() + (_number(reply.header("Options-TTL"))
                                        or DEFAULT_OPTIONS_TTL))
        state = self._states[server]
        with state.lock:
            state.options = options
            state.hung = False
        return options

    def _current_options(self, server: IcapAddress) -> IcapOptions:
        state = self._states[server]
        with state.lock:
            options = state.options
        if options is not None and time.monotonic() < options.expires:
            return options
        try:
            return self._options(server, min(PING_TIMEOUT, self.timeout))
        except TimeoutError:
            raise _Failed(f"{server.url}: OPTIONS timed out", timed_out=True) from None
        except _ProtocolError as exc:
            raise _Failed(f"{server.url}: OPTIONS: {exc}") from None
        except OSError as exc:
            raise _Failed(f"{server.url}: OPTIONS: {exc}") from None

    def _answers_options(self, server: IcapAddress) -> bool:
        try:
            self._options(server, min(PING_TIMEOUT, self.timeout))
        except (_Unreachable, _Failed, _ProtocolError, OSError):
            return False
        return True

    def ping(self) -> bool:
        """OPTIONS on every server (each one, so that every ``ssftp_icap_up`` is current);
        True when any answers 200 within ``PING_TIMEOUT``. A hung server that answers is
        used again."""
        answered = False
        for server in self.servers:
            ok = self._answers_options(server) and self._blind(server, force=True) is None
            icap_answered(server.url, ok)
            answered = answered or ok
        return answered

    def _blind(self, server: IcapAddress, *, force: bool = False) -> str | None:
        """Why ``server`` cannot be trusted to judge (it says clean about the EICAR test
        file), or None; asked again when :data:`CANARY_SECONDS` old (``force``: now). A canary
        that got no answer at all decides nothing: the file's own scan finds that out."""
        state = self._states[server]
        with state.lock:
            fresh = (state.canary_at is not None
                     and time.monotonic() - state.canary_at < CANARY_SECONDS)
            if fresh and not force:
                return self._blindness(server) if state.blind else None
        try:
            verdict = self._scan_on(server, io.BytesIO(EICAR), len(EICAR))
        except (_Unreachable, OSError):
            return None
        if verdict.kind is VerdictKind.ERROR:
            return None
        with state.lock:
            state.canary_at = time.monotonic()
            state.blind = verdict.kind is not VerdictKind.INFECTED
            return self._blindness(server) if state.blind else None

    @staticmethod
    def _blindness(server: IcapAddress) -> str:
        return (f"{server.url}: answers clean for the EICAR test file, so its answers are not "
                "scans (its engine is away or it passes on errors)")

    def over_limit(self, size: int) -> Verdict | None:
        """The verdict on a file of ``size`` bytes that is over ``max_file_size``: decided
        before a byte is read, never clean."""
        if self.max_file_size is not None and size > self.max_file_size:
            return Verdict(VerdictKind.UNSCANNABLE,
                           f"{size} bytes is over the scan limit of {self.max_file_size}")
        return None

    def loaded_signatures(self) -> Signatures | None:
        """None: an ICAP server names no database we could record (its ISTag is in
        :attr:`istag`, for logs)."""
        return None

    def signatures(self) -> Signatures:
        raise OSError("an ICAP server names no signature database")

    @property
    def last_signatures(self) -> Signatures | None:
        return None

    def __str__(self) -> str:
        return f"ICAP at {', '.join(server.url for server in self.servers)}"

    # --- scanning ------------------------------------------------------------------------

    def scan(self, path: Path, mode: ScanMode = "auto") -> Verdict:
        """Send the bytes at ``path`` to the first server that can be connected to; ``mode``
        is ignored (ICAP always sends the bytes)."""
        try:
            handle = path.open("rb")
        except OSError as exc:
            return Verdict(VerdictKind.ERROR, f"cannot read the file to scan: {exc}")
        with handle:
            try:
                size = _size(handle)
            except OSError as exc:
                return Verdict(VerdictKind.ERROR, f"cannot read the file to scan: {exc}")
            if (limited := self.over_limit(size)) is not None:
                return limited
            skipped: list[str] = []
            for server in self.servers:
                state = self._states[server]
                with state.lock:
                    hung = state.hung
                if hung:
                    skipped.append(f"{server.url}: hangs (a scan timed out and OPTIONS was "
                                   "not answered)")
                    continue
                if (blindness := self._blind(server)) is not None:
                    icap_answered(server.url, False)
                    skipped.append(blindness)
                    continue
                try:
                    handle.seek(0)
                    return self._scan_on(server, handle, size)
                except _Unreachable as exc:
                    skipped.append(str(exc))
                except OSError as exc:  # our own file, not the server
                    return Verdict(VerdictKind.ERROR, f"cannot read the file to scan: {exc}")
            return Verdict(VerdictKind.ERROR, "no ICAP server could be reached: "
                           + "; ".join(skipped), unreachable=True)

    def _scan_on(self, server: IcapAddress, handle: BinaryIO, size: int) -> Verdict:
        """The verdict of ``server``; raises _Unreachable when it cannot be connected to,
        OSError when our file cannot be read."""
        try:
            options = self._current_options(server)
        except _Failed as exc:
            return Verdict(VerdictKind.ERROR, exc.detail, timed_out=exc.timed_out)
        state = self._states[server]
        if not self._take_slot(state, options.max_connections):
            return Verdict(VerdictKind.ERROR, f"{server.url}: all its {options.max_connections} "
                           f"connections (Max-Connections) stayed busy for {self.timeout:g} s",
                           timed_out=True)
        try:
            sock = self._connect(server, self.timeout)
            with sock:
                return self._respmod(server, sock, handle, size, options.preview)
        except _Failed as exc:
            return Verdict(VerdictKind.ERROR, exc.detail, timed_out=exc.timed_out)
        except _ProtocolError as exc:
            return Verdict(VerdictKind.ERROR, f"{server.url}: {exc}")
        except TimeoutError:
            return self._timed_out(server)
        except _FileError as exc:
            raise exc.error from None
        except OSError as exc:
            return Verdict(VerdictKind.ERROR, f"{server.url}: {exc}")
        finally:
            with state.lock:
                state.in_flight -= 1
                state.lock.notify()

    def _take_slot(self, state: _ServerState, limit: int | None) -> bool:
        with state.lock:
            if limit is not None and limit > 0 and not state.lock.wait_for(
                    lambda: state.in_flight < limit, timeout=self.timeout):
                return False
            state.in_flight += 1
            return True

    def _timed_out(self, server: IcapAddress) -> Verdict:
        """A scan waited ``timeout``: a server that still answers OPTIONS was slow on this
        file (an error of the file); one that does not hangs, and is skipped until a ping."""
        waited = f"{server.url}: timed out after {self.timeout:g} s"
        if self._answers_options(server):
            return Verdict(VerdictKind.ERROR, waited, timed_out=True)
        state = self._states[server]
        with state.lock:
            state.hung = True
        hung = f"{waited} and does not answer OPTIONS"
        others = [s for s in self.servers if not self._states[s].hung]
        return Verdict(VerdictKind.ERROR, hung, timed_out=True, unreachable=not others)

    def _respmod(self, server: IcapAddress, sock: socket.socket, handle: BinaryIO, size: int,
                 preview: int | None) -> Verdict:
        http = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {size}\r\n\r\n").encode()
        head = self._request_line("RESPMOD", server) + b"Allow: 204\r\n"
        if preview is not None:
            head += f"Preview: {preview}\r\n".encode()
        head += (f"Encapsulated: res-hdr=0, res-body={len(http)}\r\n"
                 "Connection: close\r\n\r\n").encode() + http
        body = _Body(handle, size, self.chunk_size)
        reader = _Reader(sock)
        if preview is not None:
            first = body.read(preview)
            whole = body.sent == size
            sock.sendall(head + _chunk(first) + (b"0; ieof\r\n\r\n" if whole else b"0\r\n\r\n"))
            reply = _read_reply(reader)
            self._saw(reply)
            if reply.status == 100:
                if whole:
                    raise _ProtocolError("100 Continue after the whole file was sent")
                if not self._send_rest(sock, body):
                    return self._early(server, reader, body)
                reply = _read_reply(reader)
                self._saw(reply)
                return self._judge(server, reply, reader, body)
            return self._judge(server, reply, reader, body)
        sock.sendall(head)
        if not self._send_rest(sock, body):
            return self._early(server, reader, body)
        reply = _read_reply(reader)
        self._saw(reply)
        return self._judge(server, reply, reader, body)

    def _send_rest(self, sock: socket.socket, body: _Body) -> bool:
        """Send the rest of the body and its last chunk; False when the server hung up first
        (it may have answered: the caller reads that)."""
        try:
            while data := body.read(self.chunk_size):
                sock.sendall(_chunk(data))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _early(self, server: IcapAddress, reader: _Reader, body: _Body) -> Verdict:
        """The server hung up before the whole file was sent: its answer, if it gave one,
        may say it found something; a 204 or an unmodified 200 cannot be clean."""
        try:
            reply = _read_reply(reader)
        except (OSError, _ProtocolError):
            return Verdict(VerdictKind.ERROR, f"{server.url}: the connection was closed "
                           f"after {body.sent} of {body.size} bytes were sent")
        self._saw(reply)
        verdict = self._judge(server, reply, reader, body)
        if verdict.kind is VerdictKind.CLEAN:
            return Verdict(VerdictKind.ERROR, f"{server.url}: answered {reply.status} after "
                           f"{body.sent} of {body.size} bytes, before the whole file was sent")
        return verdict

    def _judge(self, server: IcapAddress, reply: _Reply, reader: _Reader,
               body: _Body) -> Verdict:
        if reply.status == 204:
            return Verdict(VerdictKind.CLEAN, "OK")
        if reply.status != 200:
            return Verdict(VerdictKind.ERROR, f"{server.url}: ICAP {reply.status} "
                           f"{reply.reason}".rstrip())
        if names := threat_names(reply.headers):
            return worst([finding(name) for name in names])
        sections = _encapsulated(reply)
        names_only = [name for name, _ in sections]
        http_status: int | None = None
        returned: tuple[int, str] | None = None
        for index, (name, offset) in enumerate(sections):
            if name in ("null-body", "res-body", "req-body", "opt-body"):
                if index != len(sections) - 1:
                    raise _ProtocolError(f"a body section {name} is not last")
                if name == "res-body":
                    returned = _read_chunked(reader, limit=body.size)
                elif name != "null-body":
                    _read_chunked(reader, limit=0)  # not ours: any byte of it is a change
                    returned = (-1, "")
                break
            size = sections[index + 1][1] - offset
            section = reader.exactly(size)
            if name == "res-hdr":
                http_status = _http_status(section)
        if returned is None:
            returned = (0, hashlib.sha256(b"").hexdigest())
        original = body.digest()
        if http_status == 200 and "res-hdr" in names_only and returned == original:
            return Verdict(VerdictKind.CLEAN, "OK")
        return Verdict(VerdictKind.INFECTED, f"{MODIFIED} FOUND (the server changed the "
                       f"content: HTTP {http_status}, {returned[0]} of {body.size} bytes)",
                       MODIFIED)


class _FileError(Exception):
    """Reading our own file failed: not the server's fault."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Body:
    """The file as it is sent: how much, and the SHA-256 of what was read."""

    def __init__(self, handle: BinaryIO, size: int, chunk_size: int) -> None:
        self.handle = handle
        self.size = size
        self.chunk_size = chunk_size
        self.sent = 0
        self.hash = hashlib.sha256()

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` more bytes, never past the size the file had when the scan began
        (the Content-Length sent)."""
        want = min(limit, self.size - self.sent)
        if want <= 0:
            return b""
        try:
            data = self.handle.read(want)
        except OSError as exc:
            raise _FileError(exc) from exc
        if len(data) < want:
            raise _FileError(OSError(f"the file shrank while it was sent ({self.sent + len(data)}"
                                     f" of {self.size} bytes)"))
        self.sent += len(data)
        self.hash.update(data)
        return data

    def digest(self) -> tuple[int, str]:
        """Length and SHA-256 of the whole file (what is not sent yet is read for it)."""
        while self.read(self.chunk_size):
            pass
        return self.sent, self.hash.hexdigest()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""


def _read_chunked(reader: _Reader, limit: int) -> tuple[int, str]:
    """Read a chunked body: its length and SHA-256. Reading stops once it is longer than
    ``limit`` (then it differs from what was sent whatever follows: (-1, ""))."""
    digest = hashlib.sha256()
    length = 0
    while True:
        line = reader.line().decode("latin-1")
        size_text = line.split(";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _ProtocolError(f"unreadable chunk size {line[:100]!r}") from None
        if size < 0:
            raise _ProtocolError(f"unreadable chunk size {line[:100]!r}")
        if size == 0:
            while reader.line():  # trailers, up to the empty line
                pass
            return length, digest.hexdigest()
        if length + size > limit:
            return -1, ""
        digest.update(reader.exactly(size))
        length += size
        if reader.exactly(2) != b"\r\n":
            raise _ProtocolError("a chunk does not end with CRLF")


def _http_status(section: bytes) -> int | None:
    first = section.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = first.partition(" ")
    code = rest[:3]
    if version.startswith("HTTP/") and code.isdigit():
        return int(code)
    return None


def _number(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _size(handle: BinaryIO) -> int:
    return os.fstat(handle.fileno()).st_size
