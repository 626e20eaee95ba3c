"""Webhooks in tests: entries of ssftp.yaml, and a real receiver (an HTTP server on 127.0.0.1,
in a thread) that records every POST and can answer slowly, refuse, or hold a delivery in
flight on cue."""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass

from ssftp.config.schema import SsftpConfig, Webhook


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


def with_webhooks(*webhooks: Webhook) -> SsftpConfig:
    """A config of the instance ``gw-1`` with these webhooks."""
    return SsftpConfig.model_validate({"instanceName": "gw-1"}).model_copy(
        update={"webhooks": list(webhooks)})


def hook(name: str = "virusFound", url: str = "http://127.0.0.1:9/hook",
         secret: str | None = "s3cret") -> Webhook:
    """A webhook of ssftp.yaml (by default one nothing listens at)."""
    data = {"name": name, "url": url}
    if secret is not None:
        data["secret"] = secret
    return Webhook.model_validate(data)
