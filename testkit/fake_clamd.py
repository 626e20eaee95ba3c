"""A fake clamd: a real socket server, on a Unix socket or on 127.0.0.1, that speaks clamd's
protocol as ``ssftp.scan.clamd`` speaks it and answers what the test chooses.

Unit tests of the scan path need clamd's protocol and its failures, not its engine: a real
clamd takes seconds to load its signatures, and it cannot be made to answer ``ERROR``, garbage
or nothing at all on cue. The fake takes what the client really sends over a real socket:

- ``PING``, ``VERSION``, ``STATS`` (with clamd's ``THREADS`` line: :func:`stats`);
- ``SCAN <path>`` (it reads the path itself, as clamd opens it in its own process);
- ``FILDES`` with the descriptor passed as ``SCM_RIGHTS`` beside one byte (Unix socket only);
- ``INSTREAM`` as ``<4-byte big-endian length><chunk>`` ... ``<0000>``, refused once longer
  than ``stream_max_length`` as clamd's ``StreamMaxLength`` refuses it;

each prefixed ``z`` (ended by NUL, answered with NUL) or ``n`` (ended by newline, answered with
a newline), and one command per connection, as clamd outside ``IDSESSION`` serves them. What it
answers is :attr:`FakeClamd.answer`, a function of the :class:`Request`; by default
:func:`like_clamd` (``PONG``, ``FOUND`` for the EICAR test file, ``OK`` for anything else).
Every request it took is in :attr:`FakeClamd.requests`, with the bytes it was given to scan.

Real clamd, with the offline test signatures, stays in the integration tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ssftp.addresses import ClamdAddress
from ssftp.scan.signatures import GENERATION_MARKER
from testkit.files import EICAR_MARKER

HOST = "127.0.0.1"
SCAN_COMMANDS = frozenset({"SCAN", "FILDES", "INSTREAM"})
VERSION = "ClamAV 1.0.0/27000/Thu Jan  1 00:00:00 2026"
EICAR_SIGNATURE = "Eicar-Test-Signature"
# The threads the fake says it has (``MaxThreads``), as the clamd of ``ssftp up`` has.
MAX_THREADS = 4
# clamd's own words when a stream passes StreamMaxLength (its reply names no object).
STREAM_TOO_LONG = "INSTREAM size limit exceeded."
_FDS_SPACE = socket.CMSG_SPACE(struct.calcsize("i") * 4)


class Silence:
    """An answer: say nothing and keep the connection open until the client gives up (a hung
    clamd, or one stopped with SIGSTOP)."""


class HangUp:
    """An answer: close the connection without a word (a clamd that crashed mid-scan)."""


SILENCE = Silence()
HANG_UP = HangUp()
Answer = bytes | Silence | HangUp


@dataclass(frozen=True)
class Request:
    """One command as the fake received it."""

    command: str  # PING, VERSION, SCAN, FILDES, INSTREAM, or whatever else was sent
    argument: str  # SCAN's path; empty for the others
    terminator: bytes  # b"\0" for a ``z`` command, b"\n" for an ``n`` one
    data: bytes | None = None  # what it was given to scan; None when it could not read it
    problem: str | None = None  # why it could not, in clamd's words

    @property
    def probes_generation(self) -> bool:
        """The client asking which signature generation is loaded (ssftp.scan.signatures),
        not scanning a file."""
        return self.command == "INSTREAM" and self.data == GENERATION_MARKER

    @property
    def name(self) -> str:
        """What clamd calls the scanned object in its reply: the path, ``fd[N]``, ``stream``."""
        return {"FILDES": "fd[9]", "INSTREAM": "stream"}.get(self.command, self.argument)


def stats(max_threads: int = MAX_THREADS) -> bytes:
    """clamd 1.4's ``STATS`` reply, word for word but the numbers, saying ``max_threads``."""
    return (f"POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 1  idle 0 max {max_threads} "
            "idle-timeout 30\nQUEUE: 0 items\n\tSTATS 0.000038 \n\nMEMSTATS: heap N/A mmap N/A "
            "used N/A free N/A releasable N/A pools 1 pools_used 5.883M pools_total 5.964M\n"
            "END").encode()


def like_clamd(request: Request) -> Answer:
    """What a real clamd with a signature for the EICAR test file answers."""
    if request.command == "PING":
        return b"PONG"
    if request.command == "VERSION":
        return VERSION.encode()
    if request.command == "STATS":
        return stats()
    if request.command not in SCAN_COMMANDS:
        return b"UNKNOWN COMMAND"
    if request.problem == STREAM_TOO_LONG:
        return f"{STREAM_TOO_LONG} ERROR".encode()
    if request.data is None:
        return f"{request.name}: {request.problem} ERROR".encode()
    if EICAR_MARKER in request.data:
        return f"{request.name}: {EICAR_SIGNATURE} FOUND".encode()
    return f"{request.name}: OK".encode()


def scans(reply: Answer | Callable[[Request], Answer]) -> Callable[[Request], Answer]:
    """An answer function: ``reply`` (or what it returns) for every scan, and everything else
    (``PING``, ``VERSION``, the generation probe) as clamd answers it."""

    def answer(request: Request) -> Answer:
        if request.command not in SCAN_COMMANDS or request.probes_generation:
            return like_clamd(request)
        return reply(request) if callable(reply) else reply

    return answer


class FakeClamd:
    """A fake clamd listening until :meth:`stop` (or the end of a ``with`` block).

    ``tcp=False``: a Unix socket in a directory of its own (short enough for the 108-byte
    limit of a socket path); ``tcp=True``: a free port on 127.0.0.1. :attr:`address` is what
    :class:`ssftp.scan.clamd.ClamdClient` takes. ``answer`` and ``stream_max_length`` may be
    changed at any time; a connection already answered is not affected.
    """

    def __init__(self, *, tcp: bool = False,
                 answer: Callable[[Request], Answer] = like_clamd,
                 stream_max_length: int | None = None) -> None:
        self.answer = answer
        self.stream_max_length = stream_max_length
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []
        self._stopping = False
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        if tcp:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind((HOST, 0))
            self.address = ClamdAddress(host=HOST, port=int(self._listener.getsockname()[1]))
        else:
            self._directory = tempfile.TemporaryDirectory(prefix="fake-clamd-")
            path = str(Path(self._directory.name) / "clamd.sock")
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(path)
            self.address = ClamdAddress(unix_path=path)
        self._listener.listen(16)
        self._acceptor = threading.Thread(target=self._accept, name="fake-clamd", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> FakeClamd:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def scans(self) -> list[Request]:
        """The scans of files taken so far (PINGs, generation probes and the like left out)."""
        with self._lock:
            return [request for request in self.requests
                    if request.command in SCAN_COMMANDS and not request.probes_generation]

    def stop(self) -> None:
        """Stop listening, drop every connection (a silent one too) and wait for its threads."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            connections = list(self._open)
        # accept() is not woken by closing the socket under it: a last connection wakes it.
        with contextlib.suppress(OSError), self._connect_to_self():
            pass
        self._acceptor.join()
        self._listener.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for handler in self._handlers:
            handler.join()
        if self._directory is not None:
            self._directory.cleanup()

    def _connect_to_self(self) -> socket.socket:
        if self.address.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.address.unix_path)
        else:
            sock = socket.create_connection((HOST, self.address.port or 0))
        return sock

    def _accept(self) -> None:
        while True:
            connection, _ = self._listener.accept()
            with self._lock:
                if self._stopping:
                    connection.close()
                    return
                self._open.add(connection)
                handler = threading.Thread(target=self._serve, args=(connection,),
                                           name="fake-clamd-connection", daemon=True)
                self._handlers.append(handler)
            handler.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection:
                reader = _Reader(connection)
                request = self._read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                answer = self.answer(request)
                if isinstance(answer, Silence):
                    while connection.recv(4096):  # until the client (or stop()) hangs up
                        pass
                elif isinstance(answer, bytes):
                    connection.sendall(answer + request.terminator)
        except OSError:
            pass  # the client hung up first: nothing to answer
        finally:
            with self._lock:
                self._open.discard(connection)

    def _read_request(self, reader: _Reader) -> Request | None:
        line = reader.command()
        if line is None:
            return None
        text, terminator = line
        command, _, argument = text.partition(" ")
        if command == "SCAN":
            return _scanned_path(argument, terminator)
        if command == "FILDES":
            return _scanned_descriptor(reader, terminator)
        if command == "INSTREAM":
            return self._scanned_stream(reader, terminator)
        return Request(command, argument, terminator)

    def _scanned_stream(self, reader: _Reader, terminator: bytes) -> Request:
        data = bytearray()
        while True:
            length = struct.unpack(">I", reader.exactly(4))[0]
            if length == 0:
                return Request("INSTREAM", "", terminator, bytes(data))
            data += reader.exactly(length)
            if self.stream_max_length is not None and len(data) > self.stream_max_length:
                # clamd answers at once and hangs up on the rest of the stream.
                return Request("INSTREAM", "", terminator, problem=STREAM_TOO_LONG)


def _scanned_path(path: str, terminator: bytes) -> Request:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return Request("SCAN", path, terminator,
                       problem=f"lstat() failed: {exc.strerror or exc}.")
    return Request("SCAN", path, terminator, data)


def _scanned_descriptor(reader: _Reader, terminator: bytes) -> Request:
    descriptor = reader.descriptor()
    if descriptor is None:
        return Request("FILDES", "", terminator, problem="No file descriptor received.")
    try:
        chunks = []
        offset = 0
        while chunk := os.pread(descriptor, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
    except OSError as exc:
        return Request("FILDES", "", terminator, problem=f"read failed: {exc.strerror}.")
    finally:
        os.close(descriptor)
    return Request("FILDES", "", terminator, b"".join(chunks))


class _Reader:
    """The bytes and the descriptors of one connection, read as they are needed."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._unix = connection.family == socket.AF_UNIX
        self._buffer = b""
        self._descriptors: list[int] = []
        self._closed = False

    def _fill(self) -> None:
        if self._unix:
            data, ancillary, _, _ = self._connection.recvmsg(1 << 16, _FDS_SPACE)
            for level, kind, payload in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                    usable = len(payload) - len(payload) % struct.calcsize("i")
                    self._descriptors += struct.unpack(f"{usable // 4}i", payload[:usable])
        else:
            data = self._connection.recv(1 << 16)
        self._closed = not data
        self._buffer += data

    def command(self) -> tuple[str, bytes] | None:
        """The first command (without its prefix) and its terminator; None when the client
        hung up before ending one."""
        while True:
            ends = [self._buffer.find(end) for end in (b"\0", b"\n")]
            found = [index for index in ends if index >= 0]
            if found:
                end = min(found)
                line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
                terminator = b"\0" if line.startswith(b"z") else b"\n"
                text = line[1:] if line[:1] in (b"z", b"n") else line
                return text.decode("utf-8", "surrogateescape"), terminator
            if self._closed:
                return None
            self._fill()

    def exactly(self, size: int) -> bytes:
        """``size`` bytes; OSError when the client hung up before sending them."""
        while len(self._buffer) < size:
            if self._closed:
                raise ConnectionResetError("the client hung up mid-stream")
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def descriptor(self) -> int | None:
        """The descriptor passed with the byte after FILDES; None when none came with it."""
        if self._unix:
            self.exactly(1)  # the byte the descriptor rides on
        for extra in self._descriptors[1:]:
            os.close(extra)
        return self._descriptors[0] if self._descriptors else None
