"""Uploads in progress: seen by the session that writes them, client temp names, resume.

Issue 14. sshfs creates a file, LSTATs it and gives up when it is not there (a 0-byte file was
then published); lftp's ``xfer:use-temp-file`` name ``.in.NAME.`` was stranded in staging; an
interrupted upload was discarded, so ``sftp reput``, ``lftp put -c`` and paramiko append could
not resume. Real clients against a real server (the module's ``gateway``, no scanning: a
published upload stays in staging). The plain functions are in tests/unit/test_layout.py,
tests/unit/test_scan_queue.py, tests/unit/test_server_app.py and
tests/unit/test_server_upload_writer.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import paramiko
import pytest

from ssftp.layout import (
    PARTIALS_DIR,
    TEMP_PREFIX,
)
from testkit.files import make_random_file
from testkit.sftp_client import run_sftp
from tests.support.config import PASSWORDS, Keys, gateway_config, write_config
from tests.support.gateway import ServerThread, beside, unique_name
from tests.support.waiting import wait_for

SSHFS = shutil.which("sshfs")
FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")
LFTP = shutil.which("lftp")
CURL = shutil.which("curl")
PSFTP = shutil.which("psftp")
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]


def connect(gateway: ServerThread, username: str) -> asyncssh.SSHClientConnection:
    return asyncssh.connect("127.0.0.1", gateway.port, username=username,
                            password=PASSWORDS[username], known_hosts=None, client_keys=None,
                            agent_path=None, preferred_auth="password")


@contextlib.asynccontextmanager
async def sftp_as(gateway: ServerThread, username: str) -> AsyncIterator[asyncssh.SFTPClient]:
    async with connect(gateway, username) as conn, conn.start_sftp_client() as sftp:
        yield sftp


def staged(gateway: ServerThread, name: str, account: str = "partner-a") -> Path:
    return gateway.layout.staging / account / name


def partials(gateway: ServerThread, account: str = "partner-a") -> list[Path]:
    directory = gateway.layout.staging / account / PARTIALS_DIR
    return sorted(directory.iterdir()) if directory.exists() else []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bytes_sent(gateway: ServerThread, name: str) -> int:
    """What the last published upload of ``name`` received: less than the file when it was
    resumed. The record is written just after the close's reply: waited for."""
    found: list[int] = []

    def published() -> bool:
        found[:] = [record["bytes"] for record in map(json.loads, (
                    gateway.layout.log / "transfer.log").read_text().splitlines())
                    if record.get("path") == f"/{name}" and record.get("ok")]
        return bool(found)

    wait_for(f"the transfer record of {name}", published)
    return found[-1]


async def interrupted_upload(gateway: ServerThread, name: str, data: bytes) -> None:
    """Write ``data`` to ``name`` and drop the connection with the file still open."""
    before = set(partials(gateway))
    conn = await connect(gateway, "partner-a")
    try:
        sftp = await conn.start_sftp_client()
        handle = await sftp.open(name, "wb")
        await handle.write(data, 0)
        await sftp.stat("/")  # the write has been answered
    finally:
        conn.abort()
    deadline = time.monotonic() + 30
    while not set(partials(gateway)) - before:
        assert time.monotonic() < deadline, "the interrupted upload was not kept"
        await asyncio.sleep(0.05)  # the client's side of the connection runs on this loop


# -- visible to the session that writes it -------------------------------------------------


async def test_an_upload_in_progress_is_seen_by_its_session_only(gateway: ServerThread) -> None:
    name = f"visible-{unique_name()}.bin"
    async with sftp_as(gateway, "partner-a") as sftp, \
            sftp_as(gateway, "partner-a") as other, sftp_as(gateway, "partner-b") as stranger:
        handle = await sftp.open(name, "wb")
        assert (await sftp.lstat(name)).size == 0  # what sshfs asks right after the create
        await handle.write(b"x" * 1000, 0)
        assert (await sftp.stat(name)).size == 1000
        assert (await sftp.lstat(f"/./{name}")).size == 1000
        assert (await handle.stat()).size == 1000
        for client in (other, stranger):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await client.stat(name)
        assert name not in await sftp.listdir("/")
        assert not staged(gateway, name).exists()
        await handle.close()
        assert (await other.stat(name)).size == 1000
    assert staged(gateway, name).read_bytes() == b"x" * 1000


async def test_a_zero_length_upload_closed_cleanly_is_published(gateway: ServerThread) -> None:
    name = f"empty-{unique_name()}.txt"
    async with sftp_as(gateway, "partner-a") as sftp:
        handle = await sftp.open(name, "wb")
        assert (await sftp.lstat(name)).size == 0
        await handle.close()
    assert staged(gateway, name).read_bytes() == b""


@pytest.fixture
def upload_only_gateway(gateway: ServerThread,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """An account that may upload but not list (nor so stat)."""
    root = tmp_path_factory.mktemp("upload-only")
    config = write_config(root / "ssftp.yaml", """
    sftpPort: 0
    fsyncUploads: false
    users:
      stagingDir:
        - directory: drop
          permissions: [upload]
          auth: {username: dropper, password: dropper-pw}
    """)
    with beside(ServerThread(config, root / "data"), gateway) as server:
        yield server


async def test_a_refused_stat_of_the_file_being_written_voids_it(
        upload_only_gateway: ServerThread) -> None:
    """What sshfs does where it may not stat: OPEN(CREAT), LSTAT refused, CLOSE. The client
    saw its new file fail: nothing is published, and the close says so."""
    name = f"voided-{unique_name()}.txt"
    async with asyncssh.connect("127.0.0.1", upload_only_gateway.port, username="dropper",
                                password="dropper-pw", known_hosts=None, client_keys=None,
                                agent_path=None, preferred_auth="password") as conn, \
            conn.start_sftp_client() as sftp:
        handle = await sftp.open(name, "wb")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.lstat(name)
        with pytest.raises(asyncssh.SFTPFailure, match="lstat of the file was refused"):
            await handle.close()
        async with sftp.open(f"ok-{name}", "wb") as other:  # a clean close publishes
            await other.write(b"kept", 0)
    drop = upload_only_gateway.layout.staging / "drop"
    assert not (drop / name).exists()
    assert (drop / f"ok-{name}").read_bytes() == b"kept"


@pytest.fixture
def sshfs_mount(gateway: ServerThread, keys: Keys, tmp_path: Path) -> Iterator[Path]:
    if SSHFS is None or FUSERMOUNT is None:
        pytest.skip("sshfs is not installed")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        pytest.skip("/dev/fuse is not available")
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run([SSHFS, "partner-a@127.0.0.1:/", str(mount), "-p", str(gateway.port),
                    "-o", f"IdentityFile={keys.partner.private_path}", *SSH_OPTIONS],
                   check=True, timeout=60, stdin=subprocess.DEVNULL)
    try:
        yield mount
    finally:
        subprocess.run([FUSERMOUNT, "-u", "-z", str(mount)], check=False, timeout=60)


def test_sshfs_cp_into_a_staging_mount(gateway: ServerThread, sshfs_mount: Path,
                                       tmp_path: Path) -> None:
    t = unique_name()
    source = tmp_path / "src"
    (source / "tree" / "inner").mkdir(parents=True)
    files = {"one.bin": os.urandom(300_000), "tree/a.txt": b"a\n",
             "tree/inner/b.bin": os.urandom(70_000)}
    for relative, data in files.items():
        (source / relative).write_bytes(data)
    commands = [["cp", str(source / "one.bin"), str(sshfs_mount / f"cp-{t}.bin")],
                ["cp", "-r", str(source / "tree"), str(sshfs_mount / f"tree-{t}")]]
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (command, result.stderr)
    # FUSE sends the release (sshfs's CLOSE, which publishes) after cp has returned.
    published = [f"cp-{t}.bin", f"tree-{t}/a.txt", f"tree-{t}/inner/b.bin"]
    wait_for("the copies to be published",
             lambda: all(staged(gateway, name).exists() for name in published))
    assert staged(gateway, f"cp-{t}.bin").read_bytes() == files["one.bin"]
    assert staged(gateway, f"tree-{t}/a.txt").read_bytes() == files["tree/a.txt"]
    assert staged(gateway, f"tree-{t}/inner/b.bin").read_bytes() == files["tree/inner/b.bin"]


def test_sshfs_cp_p_keeps_the_mtime(gateway: ServerThread, sshfs_mount: Path,
                                    tmp_path: Path) -> None:
    """``cp -p`` sets the times by path (SETSTAT) on the file sshfs is still writing."""
    name = f"cp-p-{unique_name()}.bin"
    data = os.urandom(100_000)
    (tmp_path / name).write_bytes(data)
    os.utime(tmp_path / name, (1_600_000_000, 1_600_000_000))
    result = subprocess.run(["cp", "-p", str(tmp_path / name), str(sshfs_mount / name)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    wait_for("the copy to be published", staged(gateway, name).exists)
    assert staged(gateway, name).read_bytes() == data
    assert staged(gateway, name).stat().st_mtime == 1_600_000_000


# -- client temp names -----------------------------------------------------------------------


def lftp(gateway: ServerThread, keys: Keys, commands: str,
         cwd: Path) -> subprocess.CompletedProcess[str]:
    assert LFTP is not None
    connect_program = " ".join(["ssh", "-a", "-x", "-i", str(keys.partner.private_path),
                                *SSH_OPTIONS])
    script = (f"set sftp:connect-program \"{connect_program}\"; set net:max-retries 1; "
              f"set cmd:fail-exit yes; open -u partner-a, -p {gateway.port} "
              f"sftp://127.0.0.1; {commands}; bye")
    return subprocess.run([LFTP, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(LFTP is None, reason="lftp is not installed")
def test_lftp_temp_file_upload_is_published(gateway: ServerThread, keys: Keys,
                                            workdir: Path) -> None:
    name = f"lftp-{unique_name()}.csv"
    data = os.urandom(200_000)
    (workdir / name).write_bytes(data)
    result = lftp(gateway, keys, f"set xfer:use-temp-file yes; put {name}", workdir)
    assert result.returncode == 0, result.stderr
    assert staged(gateway, name).read_bytes() == data
    assert not staged(gateway, f".in.{name}").exists()


# -- resume ------------------------------------------------------------------------------------


async def test_an_interrupted_upload_is_kept_hidden_for_its_account(gateway: ServerThread) -> None:
    name = f"kept-{unique_name()}.bin"
    await interrupted_upload(gateway, name, b"p" * 5000)
    assert not staged(gateway, name).exists()
    async with sftp_as(gateway, "partner-a") as sftp:
        assert (await sftp.stat(name)).size == 5000  # what a resuming client asks
        assert (await sftp.lstat(name)).size == 5000
        assert name not in await sftp.listdir("/")
    async with sftp_as(gateway, "partner-b") as stranger:
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await stranger.stat(name)
    async with sftp_as(gateway, "partner-a") as sftp, \
            sftp.open(name, "wb") as handle:  # a new upload (truncate) starts over
        await handle.write(b"new", 0)
    assert staged(gateway, name).read_bytes() == b"new"
    async with sftp_as(gateway, "partner-a") as sftp:
        assert (await sftp.stat(name)).size == 3


YEAR_2100 = 4_102_444_800.0


@pytest.fixture
def short_ttl_server(tmp_path: Path, keys: Keys, gateway: ServerThread) -> Iterator[ServerThread]:
    """The standard accounts, unfinished uploads kept 2 s, swept every fraction of a second."""
    config = write_config(tmp_path / "ssftp.yaml",
                          textwrap.dedent(gateway_config(keys)) + "partialUploadTtlSeconds: 2\n")
    with beside(ServerThread(config, tmp_path / "data", temp_sweep_seconds=0.2),
                gateway) as server:
        yield server


async def test_a_client_set_mtime_does_not_keep_unfinished_uploads_past_their_ttl(
        short_ttl_server: ServerThread) -> None:
    """An interrupted upload and a client's temp file, both dated 2100 by their client on the
    open handle, are removed once untouched for partialUploadTtlSeconds (by the server's
    clock, not the client's mtime: they were kept for ever)."""
    server, name = short_ttl_server, f"dated-{unique_name()}.bin"
    async with connect(server, "partner-a") as conn, conn.start_sftp_client() as sftp, \
            sftp.open(f"{name}.filepart", "wb") as handle:
        await handle.write(b"t" * 1000, 0)
        await handle.utime((YEAR_2100, YEAR_2100))
    conn = await connect(server, "partner-a")
    try:
        sftp = await conn.start_sftp_client()
        handle = await sftp.open(name, "wb")
        await handle.write(b"p" * 1000, 0)
        await handle.utime((YEAR_2100, YEAR_2100))
    finally:
        conn.abort()
    temp_name = staged(server, f"{name}.filepart")
    deadline = time.monotonic() + 60
    while temp_name.exists() or partials(server):
        assert time.monotonic() < deadline, (
            f"kept past their TTL: {temp_name.exists()=}, {partials(server)=}")
        await asyncio.sleep(0.1)


async def test_a_resume_at_a_wrong_offset_is_refused_with_the_reason(
        gateway: ServerThread) -> None:
    name = f"wrong-{unique_name()}.bin"
    await interrupted_upload(gateway, name, b"a" * 4096)
    async with sftp_as(gateway, "partner-a") as sftp:
        handle = await sftp.open(name, asyncssh.FXF_WRITE, encoding=None)
        with pytest.raises(asyncssh.SFTPPermissionDenied,
                           match="write at byte 100 is not a continuation"):
            await handle.write(b"b", 100)
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="write from byte 4096"):
            await handle.write(b"b", 5000)
        with pytest.raises(asyncssh.SFTPFailure, match="not published"):
            await handle.close()
        assert not staged(gateway, name).exists()
        async with sftp.open(name, asyncssh.FXF_WRITE, encoding=None) as handle:  # still resumable
            await handle.write(b"b" * 10, 4096)
    assert staged(gateway, name).read_bytes() == b"a" * 4096 + b"b" * 10


async def test_openssh_reput_resumes(gateway: ServerThread, keys: Keys, workdir: Path) -> None:
    name = f"reput-{unique_name()}.bin"
    data = os.urandom(3 << 20)
    (workdir / name).write_bytes(data)
    await interrupted_upload(gateway, name, data[:1 << 20])
    result = run_sftp(gateway.port, "partner-a", [f"reput {name}"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode == 0, result.stderr
    assert sha256(staged(gateway, name).read_bytes()) == sha256(data)
    assert bytes_sent(gateway, name) == len(data) - (1 << 20)
    assert not [path for path in partials(gateway) if path.stat().st_size == 1 << 20]


@pytest.mark.skipif(LFTP is None, reason="lftp is not installed")
async def test_lftp_put_continue_resumes(gateway: ServerThread, keys: Keys,
                                         workdir: Path) -> None:
    name = f"lftp-c-{unique_name()}.bin"
    data = os.urandom(2 << 20)
    (workdir / name).write_bytes(data)
    await interrupted_upload(gateway, name, data[:700_000])
    result = lftp(gateway, keys, f"put -c {name}", workdir)
    assert result.returncode == 0, result.stderr
    assert sha256(staged(gateway, name).read_bytes()) == sha256(data)
    assert bytes_sent(gateway, name) == len(data) - 700_000


async def test_paramiko_append_resumes(gateway: ServerThread) -> None:
    name = f"append-{unique_name()}.bin"
    data = os.urandom(1 << 20)
    await interrupted_upload(gateway, name, data[:300_000])
    transport = paramiko.Transport(("127.0.0.1", gateway.port))
    try:
        transport.connect(username="partner-a", password=PASSWORDS["partner-a"])
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        offset = client.stat(name).st_size
        assert offset == 300_000
        with client.open(name, "a") as handle:
            handle.write(data[offset:])
        client.close()
    finally:
        transport.close()
    assert sha256(staged(gateway, name).read_bytes()) == sha256(data)
    assert bytes_sent(gateway, name) == len(data) - 300_000


def test_openssh_reput_after_the_client_was_killed(gateway: ServerThread, keys: Keys,
                                                   workdir: Path) -> None:
    """SIGKILL to ``sftp`` in the middle of a 50 MiB ``put`` (its ``ssh`` child then closes
    the channel), then ``reput``: the file is whole, and only the rest was sent again."""
    name = f"killed-{unique_name()}.bin"
    source = make_random_file(workdir / name, 50 << 20)
    batch = workdir / "put.batch"
    batch.write_text(f"put {name}\n")
    args = ["sftp", "-F", "/dev/null", "-P", str(gateway.port), *SSH_OPTIONS,
            "-i", str(keys.partner.private_path),
            "-l", "16000",  # Kbit/s: about 2 MB/s, so the put is surely still running
            "-b", str(batch), "partner-a@127.0.0.1"]
    proc = subprocess.Popen(args, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def received() -> int:
            temps = [path for path in staged(gateway, "").iterdir()
                     if path.name.startswith(TEMP_PREFIX)]
            return sum(path.stat().st_size for path in temps)

        wait_for("the put to start", lambda: received() >= 1 << 20, timeout=60)
        assert proc.poll() is None, "the put finished before it could be killed"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    wait_for("the interrupted upload to be kept",
             lambda: any(path.stat().st_size >= 1 << 20 for path in partials(gateway)))
    assert not staged(gateway, name).exists()
    result = run_sftp(gateway.port, "partner-a", [f"reput {name}"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode == 0, result.stderr
    assert sha256(staged(gateway, name).read_bytes()) == sha256(source.read_bytes())
    assert bytes_sent(gateway, name) < 50 << 20


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_continue_resumes(gateway: ServerThread, workdir: Path) -> None:
    assert CURL is not None
    name = f"curl-{unique_name()}.bin"
    data = os.urandom(1 << 20)
    (workdir / name).write_bytes(data)
    await interrupted_upload(gateway, name, data[:400_000])
    result = subprocess.run(
        [CURL, "--silent", "--show-error", "--insecure", "-u",
         f"partner-a:{PASSWORDS['partner-a']}", "-T", name, "-C", "-",
         f"sftp://127.0.0.1:{gateway.port}/{name}"],
        cwd=workdir, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert sha256(staged(gateway, name).read_bytes()) == sha256(data)
    assert bytes_sent(gateway, name) == len(data) - 400_000


@pytest.mark.skipif(PSFTP is None, reason="psftp (putty-tools) is not installed")
async def test_psftp_reput_resumes(gateway: ServerThread, workdir: Path) -> None:
    assert PSFTP is not None
    name = f"psftp-{unique_name()}.bin"
    data = os.urandom(1 << 20)
    (workdir / name).write_bytes(data)
    await interrupted_upload(gateway, name, data[:500_000])
    (workdir / "reput.batch").write_text(f"reput {name}\n")
    host_key = gateway.service.gateway.host_keys[0].get_fingerprint()
    result = subprocess.run(
        [PSFTP, "-batch", "-P", str(gateway.port), "-pw", PASSWORDS["partner-a"],
         "-hostkey", host_key, "-b", "reput.batch", "partner-a@127.0.0.1"],
        cwd=workdir, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha256(staged(gateway, name).read_bytes()) == sha256(data)
    assert bytes_sent(gateway, name) == len(data) - 500_000
