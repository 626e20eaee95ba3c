"""``scanning.verdictOnClose`` end to end: the close reply of an upload tells the partner the
verdict. The SFTP server with the option, the scan worker as ``ssftp up`` runs it (real
Prefect), and OpenSSH ``sftp -b``, which prints the infection and stops at the failed ``put``.
The waiting logic (server.verdict_wait) is in tests/unit/ and tests/integration/
test_server_verdict_wait.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from deployments.worker import WorkerThread
from server.descriptors import process_budget
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from ssftp.scan.router import VERDICT_RECORD_SUFFIX
from testkit.files import EICAR
from testkit.sftp_client import run_sftp
from tests.support.config import PARTNER_PASSWORD, write_config
from tests.support.gateway import ServerThread, unique_name
from tests.support.waiting import wait_for

# --- end to end: OpenSSH sftp against the server with the scan worker ---------------------


def stack_config(clamd_socket: Path, verdict_on_close: str | None) -> str:
    option = f"\n  verdictOnClose: {verdict_on_close}" if verdict_on_close else ""
    return f"""\
sftpPort: 0
fsyncUploads: false
instanceName: verdict-test
clamav:
  address: {clamd_socket}
  timeout: 60
scanning:
  stableSeconds: 0.2
  batchWindowSeconds: 0.1{option}
users:
  stagingDir:
    - directory: partner-a
      auth:
        username: partner-a
        password: {PARTNER_PASSWORD}
"""


@dataclass
class Stack:
    server: ServerThread
    config: Path
    clamd_socket: Path

    @property
    def layout(self) -> DataLayout:
        return self.server.layout

    def put(self, workdir: Path, name: str, data: bytes):
        (workdir / name).write_bytes(data)
        return run_sftp(self.server.port, "partner-a", [f"put {name}", "ls"], cwd=workdir,
                        password=PARTNER_PASSWORD)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, prefect_api: str, clamd,
          ) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("verdict")
    config = write_config(root / "ssftp.yaml", stack_config(clamd.socket, "60"))
    server = ServerThread(config, root / "data")
    worker = WorkerThread(ConfigStore.open(config, server.layout), None)
    worker.start()
    yield Stack(server, config, clamd.socket)
    worker.stop(timeout=30)
    server.stop()


def test_sftp_prints_the_infection_and_stops(stack: Stack, workdir: Path):
    name = f"eicar-{unique_name()}.com"
    result = stack.put(workdir, name, EICAR)
    assert result.returncode != 0, result.stdout  # sftp -b stops at the failed put
    quarantined = stack.layout.quarantine / "partner-a" / name
    assert quarantined.read_bytes() == EICAR  # there before the reply
    signature = json.loads(quarantined.with_name(name + VERDICT_RECORD_SUFFIX).read_text()
                           )["signature"]
    assert f"infected: {signature}" in result.stderr, result.stderr
    assert "sftp> ls" not in result.stdout  # the batch ended at the put


def test_the_status_message_is_the_verdict(stack: Stack, workdir: Path):
    """Clients that show the server's message (asyncssh, paramiko, WinSCP) get it there."""
    name = f"eicar-{unique_name()}.com"
    (workdir / name).write_bytes(EICAR)

    async def put() -> asyncssh.SFTPError:
        async with asyncssh.connect(
                "127.0.0.1", stack.server.port, username="partner-a",
                password=PARTNER_PASSWORD, known_hosts=None, client_keys=None, agent_path=None,
                preferred_auth="password") as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPFailure) as caught:
                await sftp.put(str(workdir / name), name)
            return caught.value

    failure = asyncio.run(put())
    quarantined = stack.layout.quarantine / "partner-a" / name
    record = json.loads(quarantined.with_name(name + VERDICT_RECORD_SUFFIX).read_text())
    assert failure.reason == f"infected: {record['signature']}"


def test_sftp_puts_a_clean_file_as_before(stack: Stack, workdir: Path):
    name = f"clean-{unique_name()}.txt"
    result = stack.put(workdir, name, b"nothing to see\n")
    assert result.returncode == 0, result.stderr
    assert "sftp> ls" in result.stdout
    assert (stack.layout.clean / "partner-a" / name).read_bytes() == b"nothing to see\n"


def test_without_a_scanner_the_put_succeeds_after_the_wait(tmp_path: Path, clamd,
                                                           workdir: Path):
    """No worker: nothing decides, the close answers OK when the time is up."""
    config = write_config(tmp_path / "ssftp.yaml", stack_config(clamd.socket, "1.5"))
    server = ServerThread(config, tmp_path / "data")
    try:
        lone = Stack(server, config, clamd.socket)
        result = lone.put(workdir, "eicar.com", EICAR)
        assert result.returncode == 0, result.stderr
        assert "infected" not in result.stderr
        assert (server.layout.staging / "partner-a" / "eicar.com").read_bytes() == EICAR
    finally:
        server.stop()


def test_a_client_temp_name_is_answered_at_once(tmp_path: Path, clamd, workdir: Path):
    """``NAME.filepart`` (WinSCP, rclone) and ``.in.NAME`` (lftp) are never scanned under that
    name: the close does not wait the 300 s for a verdict that cannot come. (sftp's deadline
    of 120 s only turns such a wait into a failure.)"""
    config = write_config(tmp_path / "ssftp.yaml", stack_config(clamd.socket, "300"))
    server = ServerThread(config, tmp_path / "data")
    try:
        (workdir / "eicar.com").write_bytes(EICAR)
        result = run_sftp(server.port, "partner-a",
                          ["put eicar.com eicar.com.filepart", "put eicar.com .in.eicar.com"],
                          cwd=workdir, password=PARTNER_PASSWORD, timeout=120)
        assert result.returncode == 0, result.stderr
        staged = server.layout.staging / "partner-a"
        assert (staged / "eicar.com.filepart").read_bytes() == EICAR
        assert (staged / ".in.eicar.com").read_bytes() == EICAR
    finally:
        server.stop()


WAITING = 16


def descriptors_below(directory: Path) -> int:
    """How many of this process's descriptors (the server runs in it) are of files there."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{name}").startswith(f"{directory}/")
    return count


def free_handles() -> int:
    """How many more handles the process's budget would let the sessions open now."""
    budget, taken = process_budget(), 0
    while budget.take_handle():
        taken += 1
    for _ in range(taken):
        budget.release_file()
    return taken


def test_many_waiting_closes_take_no_thread_and_one_counted_descriptor_each(
        tmp_path: Path, clamd):
    """Sixteen partners close an upload at once and nothing scans: each wait holds one
    descriptor, counted in the handles' budget, and no thread of its own; when the partners
    go away the waits end (long before their 300 s) and give both back."""
    config = write_config(tmp_path / "ssftp.yaml", stack_config(clamd.socket, "300"))
    server = ServerThread(config, tmp_path / "data")
    staging = server.layout.staging / "partner-a"

    def threads_but_sessions() -> int:
        return sum(thread.name != "ssftp-session" for thread in threading.enumerate())

    async def scenario() -> None:
        free_before, threads_before = free_handles(), threads_but_sessions()
        connections = [await asyncssh.connect(
            "127.0.0.1", server.port, username="partner-a", password=PARTNER_PASSWORD,
            known_hosts=None, client_keys=None, agent_path=None, preferred_auth="password")
            for _ in range(WAITING)]
        closes = []
        for number, conn in enumerate(connections):
            sftp = await conn.start_sftp_client()
            upload = await sftp.open(f"file-{number}.bin", "wb")
            await upload.write(b"x" * number)
            closes.append(asyncio.ensure_future(upload.close()))

        async def all_waiting() -> None:
            # Published, and each held by its wait (server.recent_uploads keeps none).
            while (len(list(staging.glob("file-*.bin"))) < WAITING
                   or descriptors_below(staging) < WAITING):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(all_waiting(), 60)
        assert not any(close.done() for close in closes)  # all waiting for a verdict
        assert descriptors_below(staging) == WAITING
        assert free_handles() == free_before - WAITING
        assert threads_but_sessions() < threads_before + WAITING
        for conn in connections:
            conn.close()
        await asyncio.gather(*closes, return_exceptions=True)

        async def all_given_back() -> None:
            while free_handles() != free_before or descriptors_below(staging) != 0:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(all_given_back(), 60)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_with_the_option_removed_the_eicar_put_succeeds_as_before(stack: Stack,
                                                                  workdir: Path):
    """Last: it reloads the config without the option (re-read like the limits)."""
    write_config(stack.config, stack_config(stack.clamd_socket, None))
    wait_for("the reload without verdictOnClose",
             lambda: stack.server.store.current.loaded.config.scanning.verdict_on_close is None)
    name = f"eicar-{unique_name()}.com"
    result = stack.put(workdir, name, EICAR)
    assert result.returncode == 0, result.stderr
    assert "infected" not in result.stderr
    wait_for("EICAR in quarantine", (stack.layout.quarantine / "partner-a" / name).exists)
