"""The metrics listener cannot take the SFTP service's descriptors (issue item 4): a flood of
idle connections to ``--metrics-listen`` is held to a few, each for a few seconds, and a
flood of ``/healthz`` runs its checks once, not once per request.

The flood is real: sockets of this process against a real ``ssftp serve`` started with a low
RLIMIT_NOFILE, and a real OpenSSH ``sftp`` login beside it.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ssftp.layout import DataLayout
from ssftp.runtime.listener import MetricsListener
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from testkit.ssftp_process import SsftpProcess, child_env, ssftp_command, wait_for_banner
from tests.support import wait_for, write_config

NOFILE = 256  # soft and hard: the server cannot raise it
FLOOD = 1000
USER, PASSWORD = "dropper", "dropper-pw-flood"


@pytest.fixture
def few_descriptors(tmp_path: Path) -> Iterator[tuple[SsftpProcess, int]]:
    """``ssftp serve --metrics-listen`` with RLIMIT_NOFILE 256, and its metrics port."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is needed to start the server with a low RLIMIT_NOFILE")
    config = write_config(tmp_path / "ssftp.yaml", f"""
    fsyncUploads: false
    users:
      stagingDir:
        - directory: drop
          auth: {{username: {USER}, password: {PASSWORD}}}
    """)
    data, port, metrics_port = tmp_path / "data", free_port(), free_port()
    output = tmp_path / "serve.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            ["prlimit", f"--nofile={NOFILE}:{NOFILE}", *ssftp_command(), "serve", "--config",
             str(config), "--data-dir", str(data), "--port", str(port), "--metrics-listen",
             f"127.0.0.1:{metrics_port}"],
            env=child_env(tmp_path), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    server = SsftpProcess(process, port, DataLayout.at(data), output)
    try:
        wait_for_banner(port, process, "ssftp serve", output)
        wait_for(lambda: answer(f"http://127.0.0.1:{metrics_port}/healthz"), "/healthz")
        yield server, metrics_port
    finally:
        server.stop()


def answer(url: str) -> httpx.Response | None:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url, timeout=10)
    return None


BATCH = 4  # fewer than main's listen backlog (5): a burst beyond it is dropped by the kernel


@contextlib.contextmanager
def idle_connections(port: int, count: int, pid: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``port`` that never send a byte, held for the block.

    They are opened a few at a time, each batch once the last is connected: SYNs beyond the
    listen backlog are dropped and retried by TCP for minutes. Fewer are opened once the
    server ``pid`` has run out of descriptors (on main), as no more can be taken in."""
    held: list[socket.socket] = []
    try:
        while len(held) < count and not out_of_descriptors(pid):
            batch = [connecting(port) for _ in range(BATCH)]
            held += batch
            wait_until_connected(batch, pid)
        yield held
    finally:
        for sock in held:
            sock.close()


def connecting(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    return sock


def wait_until_connected(sockets: list[socket.socket], pid: int) -> None:
    """Until every connect of ``sockets`` is done, or the server is out of descriptors."""
    poller = select.poll()
    for sock in sockets:
        poller.register(sock, select.POLLOUT)
    pending = len(sockets)
    deadline = time.monotonic() + 90  # only turns a hang into a failure
    while pending and not out_of_descriptors(pid):
        assert time.monotonic() < deadline, f"{pending} connections not taken in"
        for fd, _ in poller.poll(100):
            poller.unregister(fd)
            pending -= 1


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def out_of_descriptors(pid: int) -> bool:
    return descriptors(pid) >= NOFILE


def test_idle_connections_to_the_metrics_port_leave_sftp_logins_working(few_descriptors,
                                                                         tmp_path):
    """On main each connection got a thread and kept its descriptor (never timed out): they
    took all 256, and SFTP logins failed (ConnectionLost) until they went away."""
    server, metrics_port = few_descriptors
    with idle_connections(metrics_port, FLOOD, server.pid) as flood:
        login = run_sftp(server.port, USER, ["ls"], cwd=tmp_path, password=PASSWORD,
                         timeout=120)
        assert login.returncode == 0, login.stderr
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
        assert scrape.status_code == 200 and "ssftp_sessions" in scrape.text
        assert len(flood) == FLOOD
        assert descriptors(server.pid) < NOFILE // 2


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
        wait_for(entered.is_set, "the first /healthz to be taken in")
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
