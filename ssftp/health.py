"""The metrics listener: ``/metrics`` (Prometheus text format) and ``/healthz`` on one port.

``metrics.listen`` in ssftp.yaml, or ``--metrics-listen HOST:PORT`` on ``up``, ``serve`` and
``worker``, starts it. It is a small threaded ``http.server`` (no web framework) on its own
daemon threads: a scrape never waits for the event loop, however busy the SFTP sessions keep
it, and prometheus_client's metrics are safe to read from any thread.

``/healthz`` runs its checks when asked (a Docker HEALTHCHECK every few seconds): each part
the process runs answers ``up``, ``down`` or ``off`` (clamd with scanning switched off), and
each check is bounded by :data:`CHECK_SECONDS`, so a hung clamd cannot hang the probe. It
lives in the core because ``serve`` (in ``server``) starts it too; every layer passes in the
checks of what it runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ssftp.clamd import ClamdClient
from ssftp.errors import InvalidValueError, ListenError
from ssftp.logs import APP, log_event
from ssftp.metrics import REGISTRY

logger = logging.getLogger(APP)

# Each check's bound: clamd answers PING and Prefect /health at once when they are well.
CHECK_SECONDS = 2.0
# How soon a stop is noticed by the serving thread.
_POLL_SECONDS = 0.1

Status = Literal["up", "down", "off"]
Check = Callable[[], Status]
Address = tuple[str, int]


def parse_listen(value: str) -> Address:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as (host, port); InvalidValueError if not."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)


def up_or_down(answered: bool) -> Status:
    return "up" if answered else "down"


def clamd_status(client: ClamdClient | None) -> Status:
    """PING the clamd that ``client`` scans with, within CHECK_SECONDS; ``off`` without one."""
    if client is None:
        return "off"
    return up_or_down(ClamdClient(client.address, timeout=CHECK_SECONDS).ping())


def health_report(checks: Mapping[str, Check]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of ``/healthz``: 200 ``{"status": "ok", "checks": ...}``
    when nothing is down, else 503 with ``"status": "down"`` and the ``down`` checks' names."""
    results = {name: check() for name, check in checks.items()}
    down = [name for name, status in results.items() if status == "down"]
    if down:
        return 503, {"status": "down", "down": down, "checks": results}
    return 200, {"status": "ok", "checks": results}


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Address, checks: Mapping[str, Check]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.checks = checks
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._answer(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        elif path == "/healthz":
            status, report = health_report(self.server.checks)
            self._answer(status, "application/json", json.dumps(report).encode())
        else:
            self._answer(404, "text/plain; charset=utf-8", b"/metrics or /healthz\n")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a scrape every few seconds would fill the logs with nothing new."""


class MetricsListener:
    """Serves ``/metrics`` and ``/healthz`` on ``address`` until :meth:`stop`."""

    def __init__(self, address: Address, checks: Mapping[str, Check]) -> None:
        host, port = address
        try:
            self._server = _Server(address, checks)
        except OSError as exc:
            raise ListenError(f"cannot listen for metrics on {host}:{port}: "
                              f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        args=(_POLL_SECONDS,), name="ssftp-metrics",
                                        daemon=True)
        self._thread.start()
        log_event(logger, "metrics listening", host=host, port=self.port,
                  paths=["/metrics", "/healthz"])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextlib.contextmanager
def metrics_listening(address: Address | None, checks: Mapping[str, Check]) -> Iterator[None]:
    """Serve the listener for the block's duration; nothing when ``address`` is None (off)."""
    if address is None:
        yield
        return
    listener = MetricsListener(address, checks)
    try:
        yield
    finally:
        listener.stop()
