"""Test support: a real ssftp server on 127.0.0.1 (in a thread with its own event loop) and a
real webhook receiver. What the benchmarks use too (sshd, the sftp client, keys, files) is in
:mod:`testkit`.

The server runs in a thread so that tests can drive blocking clients (``sftp`` subprocesses,
paramiko) against it from the test body.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from server.app import STALE_TEMP_SWEEP_SECONDS, Service, start_service
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from ssftp.logs import APP, configure_logging
from ssftp.runtime.loop_thread import LoopThread


class ServerThread:
    """``ssftp serve`` for one config file, on a free port, until ``stop()``."""

    def __init__(self, config_path: Path, data_dir: Path, *,
                 temp_sweep_seconds: float = STALE_TEMP_SWEEP_SECONDS) -> None:
        """``temp_sweep_seconds``: how often stale temp files and unfinished uploads are
        swept (an hour, as in production, unless a test needs to see the sweep)."""
        self.config_path = config_path
        self.temp_sweep_seconds = temp_sweep_seconds
        self.layout = DataLayout.at(data_dir).create()
        self._host = LoopThread("ssftp-test-server")
        self.service: Service = self.call(self._start())

    async def _start(self) -> Service:
        store = ConfigStore.open(self.config_path, self.layout)
        return await start_service(store, host="127.0.0.1", port=0,
                                   temp_sweep_seconds=self.temp_sweep_seconds)

    def call(self, coroutine):
        return self._host.call(coroutine)

    @property
    def port(self) -> int:
        return self.service.gateway.port

    @property
    def store(self) -> ConfigStore:
        return self.service.store

    def stop(self) -> None:
        self.call(self.service.stop())
        self._host.stop(timeout=10)


def write_config(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def unique_name() -> str:
    """A short random token, so tests sharing one server never touch each other's files."""
    return uuid.uuid4().hex[:12]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90.0) -> None:
    """Poll until ``condition()`` is true; the deadline only turns a hang into a clear failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)


class _BurstServer(http.server.ThreadingHTTPServer):
    request_queue_size = 64  # a backlog of notifications arrives several at once


# A trickling answer's pace: a byte well within any read timeout, so only a deadline for the
# whole request ends it; and when the receiver itself gives up (so that no test hangs for ever).
TRICKLE_SECONDS = 0.2
TRICKLE_GIVE_UP_SECONDS = 60.0


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every POST.

    ``/dead`` answers 503, and while ``gate`` is cleared it first waits for the gate, so a test
    can hold a delivery in flight for as long as it needs; ``/held`` waits for the gate too,
    then answers ``status``. Every other path answers ``status`` (200 unless a test changes
    it) at once, except a notification whose event id is in ``refused`` (HTTP 400), and the
    next ``trickles`` requests to ``/trickle-body`` and ``/trickle-headers``: the first sends
    its status line and headers, then one byte of the body every 0.2 s; the second its status
    line, then one byte of a header every 0.2 s; both until the client hangs up (the request
    is then in ``hung_up``) or a minute has passed. Requests answered in full are in
    ``requests``; every request, as it arrives, in ``arrived``.
    """

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[ReceivedRequest] = []
        self.arrived: list[ReceivedRequest] = []
        self.hung_up: list[ReceivedRequest] = []
        self.refused: set[str] = set()
        self.trickles = 0
        self.gate = threading.Event()
        self.gate.set()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = ReceivedRequest(self.path, dict(self.headers.items()),
                                          self.rfile.read(length))
                receiver.arrived.append(request)
                if self.path.startswith("/trickle") and receiver._take_trickle():
                    self._trickle(request)
                    return
                if self.path.startswith(("/dead", "/held")):
                    receiver.gate.wait(timeout=120)
                status = 503 if self.path.startswith("/dead") else receiver.status
                if self.headers.get("X-Ssftp-Event-Id") in receiver.refused:
                    status = 400
                receiver.requests.append(request)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _trickle(self, request: ReceivedRequest) -> None:
                self.close_connection = True
                start = b"HTTP/1.1 200 OK\r\n"
                if self.path.startswith("/trickle-headers"):
                    start += b"X-Slow: "
                else:
                    start += b"Content-Length: 1000000\r\n\r\n"
                give_up = time.monotonic() + TRICKLE_GIVE_UP_SECONDS
                try:
                    self.wfile.write(start)
                    while time.monotonic() < give_up and not receiver._stopping.is_set():
                        self.wfile.write(b"x")
                        receiver._stopping.wait(TRICKLE_SECONDS)
                except OSError:  # the client hung up
                    receiver.hung_up.append(request)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _BurstServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _take_trickle(self) -> bool:
        with self._lock:
            if self.trickles <= 0:
                return False
            self.trickles -= 1
            return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, path: str, file: str) -> list[ReceivedRequest]:
        """Requests answered on ``path`` about the staged file whose path ends with ``file``."""
        return [r for r in list(self.requests)
                if r.path == path and str(r.json().get("filePath", "")).endswith(file)]

    def stop(self) -> None:
        self.gate.set()
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()


S = TypeVar("S", bound=ServerThread)


@contextlib.contextmanager
def beside(server: S, gateway: ServerThread) -> Iterator[S]:
    """A test's own server next to its module's gateway: stopped afterwards, and logging
    (process-wide: the server pointed it at its own log dir) sent back to the gateway's."""
    try:
        yield server
    finally:
        server.stop()
        configure_logging([gateway.layout.log])


@contextlib.contextmanager
def app_log_records() -> Iterator[list[logging.LogRecord]]:
    """The records the application log (``ssftp``) takes while the block runs."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger(APP)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (a filesystem a test can fill up),
    unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a filesystem that can be filled) needs root")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def proc_status(pid: int, field: str) -> int:
    """A number from ``/proc/<pid>/status`` (``VmRSS`` in bytes, ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number = int(value.split()[0])
            return number * 1024 if value.strip().endswith("kB") else number
    raise AssertionError(f"no {field} for process {pid}")


class PeakSampler:
    """The highest ``field`` of a process's status while the block runs, sampled in a thread
    every 20 ms (so the peak of a probe is seen, not only what is left after it)."""

    def __init__(self, pid: int, field: str) -> None:
        self.pid, self.field = pid, field
        self.start = self.peak = proc_status(pid, field)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, proc_status(self.pid, self.field))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, proc_status(self.pid, self.field))
