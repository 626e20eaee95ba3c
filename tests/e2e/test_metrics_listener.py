"""The metrics listener cannot take the SFTP service's descriptors (issue item 4): a flood of
idle connections to ``--metrics-listen`` of a real ``ssftp serve`` started with a low
RLIMIT_NOFILE, and a real OpenSSH ``sftp`` login beside it. The listener's caps themselves are
in tests/unit/test_runtime_listener.py."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ssftp.layout import DataLayout
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from testkit.ssftp_process import SsftpProcess, child_env, ssftp_command, wait_for_banner
from tests.support.config import write_config
from tests.support.waiting import wait_for

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
        wait_for("/healthz", lambda: answer(f"http://127.0.0.1:{metrics_port}/healthz"))
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
