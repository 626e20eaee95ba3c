"""``scanning.verdictOnClose``: the close reply of an upload tells the partner the verdict.

The waiting logic (server.verdict_wait) against real files moved by the real scanner and a real
clamd: where the published inode went, whether a verdict record is its own. Then end to end:
the SFTP server with the option, the scan worker as ``ssftp up`` runs it (real Prefect), and
OpenSSH ``sftp -b``, which prints the infection and stops at the failed ``put``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from deployments.worker import WorkerThread
from server.descriptors import process_budget
from server.off_loop import SessionThread
from server.verdict_wait import (
    MESSAGE_LIMIT,
    Destinations,
    PublishedFile,
    Told,
    verdict_at_close,
    verdict_message,
)
from ssftp.addresses import ClamdAddress
from ssftp.config import parse_config
from ssftp.config.reload import ConfigStore
from ssftp.errors import ConfigError
from ssftp.layout import DataLayout
from ssftp.moves import publish, temp_path_beside
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from ssftp.scan.router import VERDICT_RECORD_SUFFIX
from testkit.sftp_client import run_sftp
from tests.conftest import CLAMD_MAX_FILE_SIZE, PARTNER_PASSWORD
from tests.support import ServerThread, tmpfs, unique_name, wait_for, write_config
from tests.test_scan_core import EICAR, make_scanner

SUB = "partner-a/inbox/eicar.com"


# --- config -------------------------------------------------------------------------------


def scanning(value: str) -> str:
    return textwrap.dedent(f"""\
        scanning:
          verdictOnClose: {value}
        users:
          stagingDir:
            - directory: partner-a
              auth: {{username: partner-a, password: pw}}
        """)


def test_verdict_on_close_is_off_by_default_and_takes_seconds():
    assert parse_config(scanning("null"), "t.yaml").config.scanning.verdict_on_close is None
    assert parse_config("{}", "t.yaml").config.scanning.verdict_on_close is None
    assert parse_config(scanning("30"), "t.yaml").config.scanning.verdict_on_close == 30.0
    assert parse_config(scanning("0.5"), "t.yaml").config.scanning.verdict_on_close == 0.5
    assert parse_config(scanning("300"), "t.yaml").config.scanning.verdict_on_close == 300.0


@pytest.mark.parametrize(("value", "expected"), [
    ("0", "Input should be greater than 0"),
    ("-5", "Input should be greater than 0"),
    ("301", "Input should be less than or equal to 300"),
    ("true", "Input should be a valid number"),
    ("soon", "Input should be a valid number"),
    ("'30'", "Input should be a valid number"),
])
def test_a_bad_verdict_on_close_is_one_line_naming_the_key(value: str, expected: str):
    with pytest.raises(ConfigError) as caught:
        parse_config(scanning(value), "t.yaml")
    (issue,) = caught.value.issues
    line = issue.describe("t.yaml")
    assert line.startswith("t.yaml:2: scanning.verdictOnClose: "), line
    assert expected in line
    assert "\n" not in line


# --- the record: is it this file's? -------------------------------------------------------


def record(**fields: object) -> dict[str, object]:
    return {"destination": "quarantine/partner-a/x.com", "size": 68, "verdict": "infected",
            "signature": "Eicar-Test-Signature", "detail": "found", **fields}


def test_a_matching_record_gives_the_signature_or_the_reason():
    assert verdict_message(record(), "quarantine/partner-a/x.com", 68) == \
        "infected: Eicar-Test-Signature"
    assert verdict_message(record(verdict="unscannable", signature=None,
                                  detail="larger than clamav.maxFileSize"),
                           "quarantine/partner-a/x.com", 68) == \
        "unscannable: larger than clamav.maxFileSize"
    # Not read by the scanner (several hard links): no size to compare.
    assert verdict_message(record(verdict="unscannable", size=None, detail="has 2 hard links"),
                           "quarantine/partner-a/x.com", 68) == "unscannable: has 2 hard links"


@pytest.mark.parametrize(("the_record", "destination", "size"), [
    (record(), "quarantine/partner-a/x (2).com", 68),  # another file of the same name
    (record(), "quarantine/partner-a/x.com", 69),  # another size: not these bytes
    (record(verdict="clean"), "quarantine/partner-a/x.com", 68),
    (record(destination=None), "quarantine/partner-a/x.com", 68),
    ([1, 2], "quarantine/partner-a/x.com", 68),
    (None, "quarantine/partner-a/x.com", 68),
])
def test_a_record_of_another_file_tells_nothing(the_record: object, destination: str,
                                                size: int):
    assert verdict_message(the_record, destination, size) is None


def test_the_message_is_printable_and_short():
    message = verdict_message(record(signature="Evil\x1b[2J\nSig\x9b" + "x" * 500),
                              "quarantine/partner-a/x.com", 68)
    assert message is not None
    assert message.startswith("infected: Evil\\x1b[2J\\nSig\\x9bxxx")
    assert len(message) == MESSAGE_LIMIT and message.endswith("...")
    assert verdict_message(record(signature=""), "quarantine/partner-a/x.com", 68) == \
        "infected: no detail"


# --- following the published inode through the real scanner -------------------------------


@pytest.fixture
def scanner(layout: DataLayout, client: ClamdClient, owners: StagingOwners):
    return make_scanner(layout, client, owners)


def published(layout: DataLayout, sub: str, data: bytes, *, replace: bool = False,
              ) -> PublishedFile:
    """An upload published the way the server does it: a temp file, a descriptor of its inode
    taken before the final name exists (by a hard link without ``replace``: the temp name,
    which the descriptor names, is then removed)."""
    target = layout.staging / sub
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_beside(target)
    temp.write_bytes(data)
    fd = os.open(temp, os.O_PATH | os.O_CLOEXEC)
    publish(temp, target, replace=replace, durable=False)
    return PublishedFile.just_published(fd, target, Destinations.of(layout))


@pytest.mark.parametrize("replace", [False, True])
def test_a_clean_file_is_told_ok_once_in_clean(layout, scanner, replace: bool):
    upload = published(layout, "partner-a/report.csv", b"a,b\n1,2\n", replace=replace)
    assert upload.look() is None  # staged: not decided yet
    result = scanner.scan(layout.staging / "partner-a/report.csv")
    assert result is not None and result.destination == "clean/partner-a/report.csv"
    assert upload.look() == Told(None)
    upload.close()


def test_an_infected_file_is_told_its_own_signature(layout, scanner):
    upload = published(layout, SUB, EICAR)
    assert upload.look() is None
    result = scanner.scan(layout.staging / SUB)
    assert result is not None and result.signature
    assert result.destination == f"quarantine/{SUB}"
    assert upload.look() == Told(f"infected: {result.signature}")
    upload.close()


def test_two_quarantined_files_of_one_name_are_each_told_their_own(layout, scanner):
    """The second lands as ``eicar (2).com`` beside ``eicar.com``, whose record is not its:
    it is told its own verdict (unscannable, as it has a second hard link), not the first's."""
    first = published(layout, SUB, EICAR)
    first_result = scanner.scan(layout.staging / SUB)
    second = published(layout, SUB, b"harmless")
    os.link(layout.staging / SUB, layout.root / "second-name")
    second_result = scanner.scan(layout.staging / SUB)
    assert first_result is not None and second_result is not None
    assert second_result.destination == "quarantine/partner-a/inbox/eicar (2).com"
    assert second.look() == Told(f"unscannable: {second_result.detail}")
    assert first.look() == Told(f"infected: {first_result.signature}")
    first.close()
    second.close()


def test_an_unscannable_file_is_told_the_reason(layout, scanner):
    upload = published(layout, "partner-a/linked.bin", b"data")
    os.link(layout.staging / "partner-a/linked.bin", layout.root / "other-name")
    result = scanner.scan(layout.staging / "partner-a/linked.bin")
    assert result is not None and result.destination == "quarantine/partner-a/linked.bin"
    told = upload.look()
    assert told == Told(f"unscannable: {result.detail}")
    assert "hard links" in result.detail
    upload.close()


def test_a_file_released_after_a_failed_scan_is_followed_back_in_staging(
        layout, scanner, owners, tmp_path):
    """clamd unreachable: the claim goes back to staging by a new hard link, the descriptor's
    name is removed; the next look finds the file where it was published, and follows it from
    there to quarantine."""
    upload = published(layout, SUB, EICAR, replace=True)
    unreachable = ClamdClient(ClamdAddress.parse(str(tmp_path / "no-clamd.sock")), timeout=5,
                              max_file_size=CLAMD_MAX_FILE_SIZE)
    failed = make_scanner(layout, unreachable, owners).scan(layout.staging / SUB)
    assert failed is not None and failed.destination == f"staging/{SUB}"
    assert upload.look() is None  # back in staging, followed there
    result = scanner.scan(layout.staging / SUB)
    assert result is not None and result.destination == f"quarantine/{SUB}"
    assert upload.look() == Told(f"infected: {result.signature}")
    upload.close()


def test_a_record_that_is_not_the_files_says_only_quarantined(layout, scanner):
    upload = published(layout, SUB, EICAR)
    assert scanner.scan(layout.staging / SUB) is not None
    record_path = layout.quarantine / (SUB + VERDICT_RECORD_SUFFIX)
    changed = {**json.loads(record_path.read_text()), "size": 1}
    record_path.write_text(json.dumps(changed))
    assert upload.look() == Told("quarantined")
    record_path.unlink()
    assert upload.look() == Told("quarantined")
    upload.close()


def test_a_file_copied_across_filesystems_is_told_ok(layout, scanner):
    """quarantine/ on another filesystem: the scanner copies the file, the published inode is
    gone, and which record is this upload's cannot be told without hashing: OK."""
    with tmpfs(layout.quarantine, "1m"):
        upload = published(layout, SUB, EICAR)
        result = scanner.scan(layout.staging / SUB)
        assert result is not None and result.destination == f"quarantine/{SUB}"
        assert (layout.quarantine / SUB).read_bytes() == EICAR
        assert upload.look() == Told(None)
        upload.close()


# --- the wait --------------------------------------------------------------------------


def wait(upload: PublishedFile, seconds: float, gone: bool = False) -> str | None:
    async def run() -> str | None:
        executor = SessionThread()
        try:
            return await asyncio.wait_for(
                verdict_at_close(executor, upload, seconds, lambda: gone), 120)
        finally:
            executor.shutdown()
    return asyncio.run(run())


def descriptor_is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_the_wait_ends_with_ok_when_nobody_scans_and_closes_the_descriptor(layout):
    upload = published(layout, SUB, EICAR)
    fd = upload._fd
    assert wait(upload, 0.3) is None
    assert (layout.staging / SUB).read_bytes() == EICAR  # untouched: still waiting its scan
    assert descriptor_is_closed(fd)


def test_the_wait_ends_when_the_client_has_gone(layout):
    upload = published(layout, SUB, EICAR)
    assert wait(upload, 300, gone=True) is None  # a hang would fail at 120 s


def test_the_wait_returns_the_verdict(layout, scanner):
    upload = published(layout, SUB, EICAR)
    result = scanner.scan(layout.staging / SUB)
    assert result is not None
    assert wait(upload, 60) == f"infected: {result.signature}"


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
    wait_for(lambda: stack.server.store.current.loaded.config.scanning.verdict_on_close
             is None, "the reload without verdictOnClose")
    name = f"eicar-{unique_name()}.com"
    result = stack.put(workdir, name, EICAR)
    assert result.returncode == 0, result.stderr
    assert "infected" not in result.stderr
    wait_for((stack.layout.quarantine / "partner-a" / name).exists, "EICAR in quarantine")

