"""The metrics listener: ``/metrics`` (Prometheus text format) and ``/healthz`` on one port.

``metrics.listen`` in ssftp.yaml, or ``--metrics-listen HOST:PORT`` on ``up``, ``serve`` and
``worker``, starts it. It has an event loop of its own on a daemon thread: a scrape never waits
for the SFTP server's loop, however busy the sessions keep it, and prometheus_client's metrics
are safe to read from any thread.

``/healthz`` runs its checks when asked (a Docker HEALTHCHECK every few seconds): each part
the process runs answers ``up``, ``down`` or ``off`` (clamd with scanning switched off), and
each check is bounded (an engine's probe waits :data:`~ssftp.scan.clamd.PING_TIMEOUT` at
most), so a hung clamd cannot hang the probe. It lives in the core because ``serve`` (in
``server``) starts it too; every layer passes in the checks of what it runs.

Whatever connects to it (a scraper's bug, a port scan, anyone on the network it listens on),
it cannot take what the SFTP sessions need:

- One thread serves every connection, and an answer is made in a thread of its own, one at a
  time for each path: requests that arrive while one is being made share it, so a flood of
  ``/healthz`` runs the checks once, not once per request (a thread each, seconds each).
- At most :data:`MAX_CONNECTIONS` are open. One more takes the place of the oldest that has
  not sent its request yet, so idle connections cannot keep a scraper out; when all are being
  answered, it gets 503 at once. A request must arrive, and its answer be taken, within
  :data:`IDLE_SECONDS`.
- Every descriptor it can hold is in :data:`DESCRIPTORS`, which ``server.descriptors`` keeps
  out of the sessions' share. On main each connection had a thread and kept its descriptor
  for as long as the client liked: 1 000 idle ones took every descriptor, and SFTP logins
  failed until they went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from http import HTTPStatus
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ssftp.addresses import Address
from ssftp.errors import ListenError
from ssftp.logs import APP, log_event
from ssftp.metrics import REGISTRY
from ssftp.scan.engines import Engine, engines_in

logger = logging.getLogger(APP)

# Connections open at once: Prometheus and a HEALTHCHECK need one each, a few at most.
MAX_CONNECTIONS = 16
# How long a client may take to send its request, and to take its answer.
IDLE_SECONDS = 5.0
# The most descriptors the listener holds at once: its socket, its connections and one being
# refused, its loop's selector and wakeup pair, and what answers open (a check's connection to
# clamd or Prefect, system/transfers.sqlite and its journal for a scrape).
DESCRIPTORS = 1 + MAX_CONNECTIONS + 1 + 3 + 4
# A request line and headers: a scraper's are a few hundred bytes.
_HEAD_LIMIT = 8192
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
# How long accepting rests after a failure (the process out of descriptors: EMFILE).
_ACCEPT_PAUSE_SECONDS = 0.1
_TEXT = "text/plain; charset=utf-8"

# Only "down" makes /healthz answer 503; "stale" signatures are reported, not down (docs/
# scanning.md says why).
Status = Literal["up", "down", "off", "fresh", "stale", "unknown"]
Check = Callable[[], Status]
# An HTTP answer: status, content type, body.
Answer = tuple[int, str, bytes]
T = TypeVar("T")


def up_or_down(answered: bool) -> Status:
    return "up" if answered else "down"


def engine_status(scanning: Engine | None, name: str) -> Status:
    """Ask the engine called ``name`` ("clamd", "icap") among those the scans use whether it
    answers (clamd's PING, ICAP's OPTIONS: each waits a few seconds at most); ``off`` when
    there is none."""
    engine = next((engine for engine in engines_in(scanning) if engine.name == name), None)
    if engine is None:
        return "off"
    return up_or_down(engine.ping())


def signatures_status(client: Engine | None, max_age_seconds: float) -> Status:
    """Whether the signatures ``client``'s clamd has loaded are older than ``max_age_seconds``:
    from the last look (scans and the rescan's watch look often), or, before one, a quick look
    of its own; ``unknown`` without an official database to date them, ``off``
    without scanning."""
    if client is None:
        return "off"
    loaded = client.last_signatures or client.loaded_signatures()
    age = None if loaded is None else loaded.age_seconds()
    if age is None:
        return "unknown"
    return "stale" if age > max_age_seconds else "fresh"


def health_report(checks: Mapping[str, Check]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of ``/healthz``: 200 ``{"status": "ok", "checks": ...}``
    when nothing is down, else 503 with ``"status": "down"`` and the ``down`` checks' names."""
    results = {name: check() for name, check in checks.items()}
    down = [name for name, status in results.items() if status == "down"]
    if down:
        return 503, {"status": "down", "down": down, "checks": results}
    return 200, {"status": "ok", "checks": results}


def _metrics_answer() -> Answer:
    return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)


def _health_answer(checks: Mapping[str, Check]) -> Answer:
    status, report = health_report(checks)
    return status, "application/json", json.dumps(report).encode()


def _response(status: int, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.0 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}"
            f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


_BUSY = _response(503, _TEXT, b"busy: too many connections to the metrics listener\n")


class _SharedRun(Generic[T]):
    """``work`` in a thread, one run at a time: whoever asks while a run is on gets its result.

    A daemon thread per run, not a ``ThreadPoolExecutor``: the interpreter joins those at exit,
    and a scrape stuck on a dead share (``system/transfers.sqlite`` on NFS) would keep the
    process from ever stopping."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work
        self._running: asyncio.Future[T] | None = None

    async def result(self) -> T:
        if self._running is None:
            loop = asyncio.get_running_loop()
            self._running = loop.create_future()
            threading.Thread(target=self._run, args=(loop, self._running),
                             name="ssftp-metrics-answer", daemon=True).start()
        # Shielded: a client that goes away does not cancel the others' answer.
        return await asyncio.shield(self._running)

    def _run(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[T]) -> None:
        try:
            settle = partial(future.set_result, self._work())
        except Exception as exc:  # handed to the requests waiting for it
            settle = partial(future.set_exception, exc)
        with contextlib.suppress(RuntimeError):  # the listener stopped (its loop is closed)
            loop.call_soon_threadsafe(self._settle, settle)

    def _settle(self, settle: Callable[[], None]) -> None:
        self._running = None
        settle()


class MetricsListener:
    """Serves ``/metrics`` and ``/healthz`` on ``address`` until :meth:`stop`."""

    def __init__(self, address: Address, checks: Mapping[str, Check], *,
                 max_connections: int = MAX_CONNECTIONS,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._socket = socket.create_server(address, family=family)
        except OSError as exc:
            raise ListenError(f"cannot listen for metrics on {host}:{port}: "
                              f"{exc.strerror or exc}") from None
        self._socket.setblocking(False)
        self._max_connections = max_connections
        self._idle_seconds = idle_seconds
        self._answers: dict[str, _SharedRun[Answer]] = {
            "/metrics": _SharedRun(_metrics_answer),
            "/healthz": _SharedRun(partial(_health_answer, checks)),
        }
        self._connections: set[asyncio.Task[None]] = set()
        # The connections still reading their request, oldest first: the ones to give way.
        self._reading: dict[socket.socket, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._serve(),), name="ssftp-metrics",
                                        daemon=True)
        self._thread.start()
        log_event(logger, "metrics listening", host=host, port=self.port,
                  paths=list(self._answers))

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Where Prometheus scrapes, for the banner (an IPv6 host in brackets)."""
        host = str(self._socket.getsockname()[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._loop.close()

    async def _serve(self) -> None:
        accepting = asyncio.create_task(self._accept())
        await self._stopping.wait()
        accepting.cancel()
        for connection in self._connections:
            connection.cancel()
        await asyncio.gather(accepting, *self._connections, return_exceptions=True)
        self._socket.close()

    async def _accept(self) -> None:
        """Take connections one at a time, so that no more are open than allowed (asyncio's
        own server takes up to a hundred at once)."""
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            try:
                client, _ = await loop.sock_accept(self._socket)
            except OSError as exc:
                if not failing:
                    log_event(logger, "metrics listener cannot accept", logging.WARNING,
                              error=exc.strerror or str(exc))
                failing = True
                await asyncio.sleep(_ACCEPT_PAUSE_SECONDS)
                continue
            failing = False
            if len(self._connections) >= self._max_connections and not await self._make_room():
                with client, contextlib.suppress(OSError):
                    client.send(_BUSY)
                continue
            connection = asyncio.create_task(self._converse(client))
            self._connections.add(connection)
            self._reading[client] = connection
            connection.add_done_callback(partial(self._ended, client))

    def _ended(self, client: socket.socket, connection: asyncio.Task[None]) -> None:
        """Close the client's socket here, not in the conversation: a connection made room
        for before its task started never runs a line of it."""
        client.close()
        self._reading.pop(client, None)
        self._connections.discard(connection)

    async def _make_room(self) -> bool:
        """End the oldest connection that has not sent its request; False if there is none."""
        oldest = next(iter(self._reading.values()), None)
        if oldest is None:
            return False
        oldest.cancel()
        await asyncio.wait([oldest])  # its socket is closed as it ends (_ended)
        return True

    async def _converse(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, TimeoutError):  # gone, or too slow
            async with asyncio.timeout(self._idle_seconds):
                head = await _read_head(loop, client)
            if head is None:
                return
            del self._reading[client]  # being answered: it no longer gives way
            answer = await self._answer(head)
            async with asyncio.timeout(self._idle_seconds):
                await loop.sock_sendall(client, answer)

    async def _answer(self, head: bytes) -> bytes:
        line = head.split(b"\n", 1)[0].rstrip(b"\r").split(b" ")
        if len(head) > _HEAD_LIMIT or len(line) != 3 or not line[2].startswith(b"HTTP/"):
            return _response(400, _TEXT, b"bad request\n")
        if line[0] != b"GET":
            return _response(405, _TEXT, b"GET only\n")
        path = urlsplit(line[1].decode("latin-1")).path
        shared = self._answers.get(path)
        if shared is None:
            return _response(404, _TEXT, b"/metrics or /healthz\n")
        try:
            return _response(*await shared.result())
        except Exception as exc:
            log_event(logger, "metrics answer failed", logging.ERROR, path=path, error=str(exc))
            return _response(500, _TEXT, b"failed, see the log\n")


async def _read_head(loop: asyncio.AbstractEventLoop, client: socket.socket) -> bytes | None:
    """What the client sent up to the end of its headers (more than _HEAD_LIMIT is a bad
    request); None if it closed before."""
    head = b""
    while not _END_OF_HEAD.search(head) and len(head) <= _HEAD_LIMIT:
        chunk = await loop.sock_recv(client, 4096)
        if not chunk:
            return None
        head += chunk
    return head


@contextlib.contextmanager
def metrics_listening(address: Address | None,
                      checks: Mapping[str, Check]) -> Iterator[str | None]:
    """Serve the listener for the block's duration, giving its URL; nothing when ``address``
    is None (off)."""
    if address is None:
        yield None
        return
    listener = MetricsListener(address, checks)
    try:
        yield listener.url
    finally:
        listener.stop()
