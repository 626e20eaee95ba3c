"""ssftp.runtime.listener: /metrics and /healthz in this process, the checks behind /healthz,
and the caps that keep a flood of connections from taking the process's descriptors. What a
real ``ssftp serve`` does under such a flood is in tests/e2e/test_metrics_listener.py."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ssftp.addresses import ClamdAddress
from ssftp.errors import ListenError
from ssftp.runtime.listener import (
    MetricsListener,
    engine_status,
    health_report,
    signatures_status,
)
from ssftp.scan.clamd import ClamdClient
from testkit.fake_clamd import like_clamd
from tests.support.metrics import scraped
from tests.support.waiting import wait_for

EXPORTED = ["ssftp_logins_total", "ssftp_sessions", "ssftp_upload_bytes_total",
            "ssftp_download_bytes_total", "ssftp_transfers_total", "ssftp_scans_total",
            "ssftp_scan_seconds_count", "ssftp_staging_files", "ssftp_clamd_up",
            "ssftp_webhooks_total", "ssftp_defender_bans_total"]


# --- /healthz, as plain functions -------------------------------------------------------------


def test_health_is_ok_when_nothing_is_down():
    status, body = health_report({"sftp": lambda: "up", "clamd": lambda: "off"})
    assert status == 200
    assert body == {"status": "ok", "checks": {"sftp": "up", "clamd": "off"}}


def test_health_names_what_is_down_with_503():
    status, body = health_report({"sftp": lambda: "up", "clamd": lambda: "down",
                                  "prefect": lambda: "down"})
    assert status == 503
    assert body == {"status": "down", "down": ["clamd", "prefect"],
                    "checks": {"sftp": "up", "clamd": "down", "prefect": "down"}}


def test_clamd_check_of_a_hung_clamd_is_down_not_hung():
    """A listener that accepts and never answers: the check's own bound ends it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host, port = silent.getsockname()
        client = ClamdClient(ClamdAddress(host=host, port=port), timeout=3600)
        assert engine_status(client, "clamd") == "down"


def test_stale_signatures_are_reported_and_do_not_take_the_gateway_down(fake_clamd):
    """The fake clamd's database was built on 1 January 2026: stale after two days, fresh
    within ten years; a clamd with no official database cannot be dated."""
    client = ClamdClient(fake_clamd.address)
    assert signatures_status(client, 2 * 24 * 3600) == "stale"
    assert signatures_status(client, 10 * 365 * 24 * 3600) == "fresh"
    assert health_report({"signatures": lambda: "stale"})[0] == 200
    fake_clamd.answer = lambda request: (b"ClamAV 1.4.6" if request.command == "VERSION"
                                         else like_clamd(request))
    assert signatures_status(ClamdClient(fake_clamd.address), 3600) == "unknown"
    assert signatures_status(None, 3600) == "off"


# --- the listener -----------------------------------------------------------------------------


@contextlib.contextmanager
def listening(checks: dict) -> Iterator[str]:
    listener = MetricsListener(("127.0.0.1", 0), checks)
    try:
        yield f"http://127.0.0.1:{listener.port}"
    finally:
        listener.stop()


def test_listener_serves_ssftp_metrics_only():
    with listening({}) as url:
        response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {name for name, _ in scraped(response.text)}
    assert set(EXPORTED) - {"ssftp_webhooks_total", "ssftp_logins_total",
                            "ssftp_transfers_total", "ssftp_scans_total",
                            "ssftp_clamd_up"} <= names
    # Prefect's own client counters live in the default registry, not in ours.
    assert all(name.startswith("ssftp_") for name in names), names


def test_listener_answers_healthz_with_the_checks_as_json():
    state = {"clamd": "up"}
    with listening({"clamd": lambda: state["clamd"]}) as url:
        ok = httpx.get(f"{url}/healthz", timeout=10)
        state["clamd"] = "down"
        down = httpx.get(f"{url}/healthz", timeout=10)
        missing = httpx.get(f"{url}/other", timeout=10)
    assert (ok.status_code, ok.json()) == (200, {"status": "ok", "checks": {"clamd": "up"}})
    assert down.status_code == 503
    assert down.json() == {"status": "down", "down": ["clamd"], "checks": {"clamd": "down"}}
    assert missing.status_code == 404


def test_listener_on_a_busy_port_is_a_listen_error_and_stop_frees_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen for metrics on 127.0.0.1:{port}"):
            MetricsListener(("127.0.0.1", port), {})
    listener = MetricsListener(("127.0.0.1", 0), {})
    port = listener.port
    listener.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    MetricsListener(("127.0.0.1", port), {}).stop()  # free again at once


# --- the listener on its own, in this process -------------------------------------------------


@contextlib.contextmanager
def listener(checks: dict, **options: float) -> Iterator[MetricsListener]:
    running = MetricsListener(("127.0.0.1", 0), checks, **options)
    try:
        yield running
    finally:
        running.stop()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (what it sent before, if anything, is read)."""
    sock.settimeout(60)  # only turns a hang into a failure
    while chunk := sock.recv(4096):
        del chunk
    return True


def test_a_connection_that_sends_no_request_is_closed():
    with listener({}, idle_seconds=0.5) as running, \
            socket.create_connection(("127.0.0.1", running.port)) as idle:
        assert closed_by_server(idle)
        response = httpx.get(f"http://127.0.0.1:{running.port}/metrics", timeout=10)
        assert response.status_code == 200


def test_beyond_the_cap_the_oldest_idle_connection_makes_room():
    """Idle connections cannot keep a scraper out: a new one takes the place of the oldest
    connection that has not sent its request yet."""
    with listener({}, max_connections=2, idle_seconds=3600) as running:
        first, second = (socket.create_connection(("127.0.0.1", running.port))
                         for _ in range(2))
        with first, second:
            response = httpx.get(f"http://127.0.0.1:{running.port}/metrics", timeout=10)
            assert response.status_code == 200
            assert closed_by_server(first)
            second.setblocking(False)
            with pytest.raises(BlockingIOError):
                second.recv(1)  # still open, still waited for


def test_beyond_the_cap_of_busy_connections_a_request_is_refused_with_503():
    entered, gate = threading.Event(), threading.Event()

    def held_check() -> str:
        entered.set()
        return "up" if gate.wait(60) else "down"

    with listener({"held": held_check}, max_connections=1) as running:
        url = f"http://127.0.0.1:{running.port}/healthz"
        waiting = ThreadedGet(url)
        wait_for("the first /healthz to be taken in", entered.is_set)
        refused = httpx.get(url, timeout=10)
        gate.set()
        assert refused.status_code == 503
        assert waiting.result().status_code == 200


class ThreadedGet:
    """One GET in a thread of its own, so that a test can hold several in flight."""

    def __init__(self, url: str) -> None:
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._get, args=(url,))
        self._thread.start()

    def _get(self, url: str) -> None:
        self._response = httpx.get(url, timeout=60)

    def result(self) -> httpx.Response:
        self._thread.join(timeout=90)
        assert self._response is not None
        return self._response


def test_a_flood_of_healthz_runs_the_checks_once_at_a_time():
    """Each check may take its 2 s (a hung clamd): requests that arrive while one run is on
    share its result. On main each request ran every check in a thread of its own."""
    running_now, most = 0, 0
    lock = threading.Lock()

    def slow_check() -> str:
        nonlocal running_now, most
        with lock:
            running_now += 1
            most = max(most, running_now)
        time.sleep(0.5)  # makes overlap likely; the assertion holds whatever the timing
        with lock:
            running_now -= 1
        return "up"

    with listener({"clamd": slow_check}) as running:
        gets = [ThreadedGet(f"http://127.0.0.1:{running.port}/healthz") for _ in range(12)]
        responses = [get.result() for get in gets]
    assert {(r.status_code, r.text) for r in responses} == {
        (200, '{"status": "ok", "checks": {"clamd": "up"}}')}
    assert most == 1
