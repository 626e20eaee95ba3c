"""Account permissions end to end, through real clients against a real server.

A staging account uploads and nothing else; a cleanDir account lists and downloads (and deletes
only with ``allowDelete``). Every refusal is SSH_FX_PERMISSION_DENIED, is logged as a
``"refused"`` JSON line, and leaves the connection usable. Interrupted uploads never appear under
their final name, and the brute-force defender bans an address after too many wrong passwords.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from testkit.files import make_random_file
from testkit.sftp_client import SFTP, run_sftp
from tests.support.config import CONSUMER_PASSWORD, PARTNER_PASSWORD, write_config
from tests.support.gateway import ServerThread, beside, unique_name
from tests.support.logs import log_entries, wait_for_log
from tests.support.sftp import assert_denied, connect, download, sftp_as, temp_files, upload
from tests.support.waiting import wait_for, wait_for_async


def assert_refusal_logged(gateway, *, user: str, op: str, path_part: str) -> dict:
    entry = wait_for_log(
        gateway.layout.log,
        lambda e: (e.get("event") == "refused" and e.get("user") == user and e.get("op") == op
                   and path_part in str(e.get("path", ""))),
        what=f"refusal of {op} {path_part} for {user}",
    )
    assert entry["level"] == "warning"
    assert entry["ip"] == "127.0.0.1"
    assert entry["reason"]
    return entry


# -- staging accounts --------------------------------------------------------------------------


async def test_staging_account_cannot_download(gateway, workdir):
    t = unique_name()
    async with sftp_as(gateway, "partner-a") as sftp:
        await upload(sftp, f"dl-{t}.txt", b"uploaded by partner-a")
        await assert_denied(sftp, download(sftp, f"dl-{t}.txt"))
        await assert_denied(sftp, upload(sftp, f"dl-{t}.txt", b"", mode="r+b"))
        # A brand-new file opened for reading and writing needs 'download' too.
        await assert_denied(sftp, upload(sftp, f"dl-new-{t}.txt", b"x", mode="w+b"))
        assert f"dl-{t}.txt" in await sftp.listdir("/")
    assert not (gateway.layout.staging / "partner-a" / f"dl-new-{t}.txt").exists()
    assert_refusal_logged(gateway, user="partner-a", op="open", path_part=f"dl-{t}.txt")
    result = run_sftp(gateway.port, "partner-a", [f"get dl-{t}.txt got.txt"], cwd=workdir,
                      password=PARTNER_PASSWORD)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    assert not (workdir / "got.txt").exists()


async def test_staging_account_cannot_read_back_through_a_write_handle(gateway):
    """A handle opened for writing only must not serve reads to an account without 'download'.

    Opening ``x.filepart`` without truncation copies its current content into the upload (the
    resume path), so READ requests on that handle would hand back a published file's bytes.
    """
    t = unique_name()
    secret = b"published bytes the staging account may not download " + t.encode()
    async with sftp_as(gateway, "partner-a") as sftp:
        await upload(sftp, f"resume-{t}.bin.filepart", secret)
        async with sftp.open(f"resume-{t}.bin.filepart", asyncssh.FXF_WRITE) as handle:
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await handle.read(len(secret), 0)
        assert await sftp.realpath(".") == "/"
    wait_for_log(gateway.layout.log,
                 lambda e: (e.get("event") == "refused" and e.get("user") == "partner-a"
                            and f"resume-{t}.bin.filepart" in str(e.get("path", ""))),
                 what="refusal of the read")


async def test_staging_account_cannot_see_clean_or_other_partners(gateway):
    t = unique_name()
    (gateway.layout.clean / "partner-a" / f"c-{t}.txt").write_text("clean")
    (gateway.layout.staging / "partner-b" / f"b-{t}.txt").write_text("partner-b's upload")
    async with sftp_as(gateway, "partner-a") as sftp:
        listing = set(await sftp.listdir("/"))
        assert not {"clean", "staging", "partner-a", "partner-b", f"b-{t}.txt", f"c-{t}.txt"} \
            & listing
        assert set(await sftp.listdir("..")) == listing
        for path in ("/clean", "../clean", "../../clean/partner-a",
                     f"../../clean/partner-a/c-{t}.txt",
                     "../partner-b", f"../partner-b/b-{t}.txt", f"/staging/partner-b/b-{t}.txt",
                     str(gateway.layout.staging / "partner-b" / f"b-{t}.txt"),
                     str(gateway.layout.clean)):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
        # What it writes with such names stays in its own directory.
        await sftp.mkdir(f"../partner-b-{t}")
    assert (gateway.layout.staging / "partner-a" / f"partner-b-{t}").is_dir()
    assert not (gateway.layout.staging / f"partner-b-{t}").exists()
    assert (gateway.layout.staging / "partner-b" / f"b-{t}.txt").read_text() == "partner-b's upload"
    async with sftp_as(gateway, "partner-b") as sftp:
        assert f"partner-b-{t}" not in await sftp.listdir("/")
        assert f"b-{t}.txt" in await sftp.listdir("/")


async def test_staging_account_cannot_delete_or_rename(gateway):
    """Nor rename a file it did not upload (here another writer's; its own recent uploads it
    may rename within their directory: tests/e2e/test_client_renames.py)."""
    t = unique_name()
    root = gateway.layout.staging / "partner-a"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"keep-{t}.txt").write_text("keep me")
    async with sftp_as(gateway, "partner-a") as sftp:
        await sftp.mkdir(f"dir-{t}")
        await assert_denied(sftp, sftp.remove(f"keep-{t}.txt"))
        await assert_denied(sftp, sftp.rename(f"keep-{t}.txt", f"moved-{t}.txt"))
        await assert_denied(sftp, sftp.posix_rename(f"keep-{t}.txt", f"moved-{t}.txt"))
        await assert_denied(sftp, sftp.rename(f"keep-{t}.txt", f"moved-{t}.txt.filepart"))
        await assert_denied(sftp, sftp.rename(f"dir-{t}", f"dir2-{t}"))
        await assert_denied(sftp, sftp.rmdir(f"dir-{t}"))
        await assert_denied(sftp, sftp.rmdir("/"))
        await assert_denied(sftp, sftp.rename("/", f"root-{t}"))
    assert (root / f"keep-{t}.txt").read_text() == "keep me"
    assert (root / f"dir-{t}").is_dir()
    assert not (root / f"moved-{t}.txt").exists()
    assert not (root / f"moved-{t}.txt.filepart").exists()
    assert_refusal_logged(gateway, user="partner-a", op="remove", path_part=f"keep-{t}.txt")
    assert_refusal_logged(gateway, user="partner-a", op="rename", path_part=f"keep-{t}.txt")
    assert_refusal_logged(gateway, user="partner-a", op="rmdir", path_part=f"dir-{t}")


async def test_staging_account_cannot_overwrite_by_default(gateway, workdir):
    t = unique_name()
    root = gateway.layout.staging / "partner-a"
    async with sftp_as(gateway, "partner-a") as sftp:
        await upload(sftp, f"once-{t}.txt", b"first version")
        await assert_denied(sftp, upload(sftp, f"once-{t}.txt", b"second version"))
        await assert_denied(sftp, upload(sftp, f"once-{t}.txt", b"appended", mode="ab"))
        await assert_denied(sftp, upload(sftp, f"once-{t}.txt", b"", mode="r+b"))
        # Finishing a .filepart upload onto an existing name does not replace it either.
        await upload(sftp, f"once-{t}.txt.filepart", b"replacement")
        await assert_denied(sftp, sftp.posix_rename(f"once-{t}.txt.filepart", f"once-{t}.txt"))
        with pytest.raises(asyncssh.SFTPFailure):  # plain rename never replaces (SFTP v3)
            await sftp.rename(f"once-{t}.txt.filepart", f"once-{t}.txt")
        # Its own in-progress .filepart it may finish under a new name (WinSCP style).
        await sftp.rename(f"once-{t}.txt.filepart", f"other-{t}.txt")
        assert await sftp.getsize(f"other-{t}.txt") == len(b"replacement")
    assert (root / f"once-{t}.txt").read_bytes() == b"first version"
    assert not temp_files(root)
    assert_refusal_logged(gateway, user="partner-a", op="open", path_part=f"once-{t}.txt")
    assert_refusal_logged(gateway, user="partner-a", op="rename",
                          path_part=f"once-{t}.txt.filepart")
    (workdir / f"once-{t}.txt").write_text("from openssh")
    result = run_sftp(gateway.port, "partner-a", [f"put once-{t}.txt"], cwd=workdir,
                      password=PARTNER_PASSWORD)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    assert (root / f"once-{t}.txt").read_bytes() == b"first version"


async def test_published_file_size_cannot_change_in_place(gateway):
    t = unique_name()
    staged = gateway.layout.staging / "partner-a" / f"size-{t}.bin"
    clean = gateway.layout.clean / "partner-a" / f"size-{t}.bin"
    clean.write_bytes(b"0123456789")
    async with sftp_as(gateway, "partner-a") as sftp:
        await upload(sftp, staged.name, b"abcdefghij")
        await assert_denied(sftp, sftp.truncate(staged.name, 0))
        await assert_denied(sftp, sftp.setstat(staged.name, asyncssh.SFTPAttrs(size=1 << 20)))
    async with sftp_as(gateway, "consumer-a") as sftp:
        await assert_denied(sftp, sftp.truncate(clean.name, 3))
        async with sftp.open(clean.name, "rb") as handle:
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await handle.truncate(0)  # fsetstat on a download handle
            assert await handle.read() == b"0123456789"
        assert await sftp.getsize(clean.name) == 10
    async with sftp_as(gateway, "clean-admin") as sftp:
        await assert_denied(sftp, sftp.truncate(f"partner-a/{clean.name}", 0))
    assert staged.read_bytes() == b"abcdefghij"
    assert clean.read_bytes() == b"0123456789"
    assert_refusal_logged(gateway, user="partner-a", op="setstat", path_part=staged.name)
    assert_refusal_logged(gateway, user="consumer-a", op="setstat", path_part=clean.name)
    assert_refusal_logged(gateway, user="clean-admin", op="setstat", path_part=clean.name)


# -- cleanDir accounts -------------------------------------------------------------------------


async def test_clean_account_can_list_and_download(gateway, keys, workdir):
    t = unique_name()
    clean = gateway.layout.clean / "partner-a"
    (clean / f"ok-{t}.txt").write_bytes(b"clean content " + t.encode())
    async with sftp_as(gateway, "consumer-a") as sftp:
        assert f"ok-{t}.txt" in await sftp.listdir("/")
        assert await download(sftp, f"ok-{t}.txt") == b"clean content " + t.encode()
    result = run_sftp(gateway.port, "consumer-a", [f"get ok-{t}.txt"], cwd=workdir,
                      key=keys.consumer.private_path)
    assert result.returncode == 0, result.stderr
    assert (workdir / f"ok-{t}.txt").read_bytes() == b"clean content " + t.encode()


async def test_clean_account_cannot_upload_mkdir_rename_or_delete(gateway, workdir):
    t = unique_name()
    clean = gateway.layout.clean / "partner-a"
    (clean / f"held-{t}.txt").write_text("held")
    (clean / f"dir-{t}").mkdir()
    before = sorted(p.name for p in clean.iterdir())
    async with sftp_as(gateway, "consumer-a") as sftp:
        await assert_denied(sftp, upload(sftp, f"new-{t}.txt", b"upload attempt"))
        await assert_denied(sftp, upload(sftp, f"new-{t}.txt.filepart", b"upload attempt"))
        await assert_denied(sftp, upload(sftp, f"held-{t}.txt", b"overwrite attempt"))
        await assert_denied(sftp, upload(sftp, f"held-{t}.txt", b"append", mode="ab"))
        await assert_denied(sftp, sftp.mkdir(f"made-{t}"))
        await assert_denied(sftp, sftp.rename(f"held-{t}.txt", f"renamed-{t}.txt"))
        await assert_denied(sftp, sftp.posix_rename(f"held-{t}.txt", f"renamed-{t}.txt"))
        await assert_denied(sftp, sftp.remove(f"held-{t}.txt"))
        await assert_denied(sftp, sftp.rmdir(f"dir-{t}"))
        assert await download(sftp, f"held-{t}.txt") == b"held"
    assert sorted(p.name for p in clean.iterdir()) == before
    assert (clean / f"held-{t}.txt").read_text() == "held"
    assert not temp_files(clean)
    for op, name in (("open", f"new-{t}.txt"), ("mkdir", f"made-{t}"),
                     ("rename", f"held-{t}.txt"), ("remove", f"held-{t}.txt"),
                     ("rmdir", f"dir-{t}")):
        assert_refusal_logged(gateway, user="consumer-a", op=op, path_part=name)
    (workdir / f"ossh-{t}.txt").write_text("x")
    result = run_sftp(gateway.port, "consumer-a", [f"put ossh-{t}.txt"], cwd=workdir,
                      password=CONSUMER_PASSWORD)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    assert not (clean / f"ossh-{t}.txt").exists()


async def test_clean_admin_can_delete(gateway):
    t = unique_name()
    clean = gateway.layout.clean
    (clean / "partner-a" / f"del-{t}.txt").write_text("to delete")
    (clean / f"emptydir-{t}").mkdir()
    async with sftp_as(gateway, "clean-admin") as sftp:
        assert "partner-a" in await sftp.listdir("/")
        assert await download(sftp, f"partner-a/del-{t}.txt") == b"to delete"
        await sftp.remove(f"partner-a/del-{t}.txt")
        await sftp.rmdir(f"emptydir-{t}")
        # allowDelete is not upload, rename or mkdir.
        await assert_denied(sftp, upload(sftp, f"admin-{t}.txt", b"x"))
        await assert_denied(sftp, sftp.mkdir(f"admin-dir-{t}"))
        await assert_denied(sftp, sftp.rmdir("/"))
    assert not (clean / "partner-a" / f"del-{t}.txt").exists()
    assert not (clean / f"emptydir-{t}").exists()
    assert not (clean / f"admin-{t}.txt").exists()
    assert_refusal_logged(gateway, user="clean-admin", op="open", path_part=f"admin-{t}.txt")


# -- interrupted uploads -----------------------------------------------------------------------


async def test_aborted_connection_discards_upload(gateway):
    t = unique_name()
    directory = gateway.layout.staging / "partner-a" / f"abort-{t}"
    directory.mkdir()
    conn = await connect(gateway.port, "partner-a", PARTNER_PASSWORD)
    try:
        sftp = await conn.start_sftp_client()
        handle = await sftp.open(f"abort-{t}/big.bin", "wb")
        chunk = os.urandom(1 << 20)
        for index in range(16):  # 16 MiB of a planned 64 MiB
            await handle.write(chunk, index * len(chunk))
        # Each WRITE is answered before it reaches the disk (server.off_loop): the bytes follow.
        await wait_for_async("the 16 MiB in the temp file", lambda: [
            temp.stat().st_size for temp in temp_files(directory)] == [16 << 20])
    finally:
        conn.abort()
    await wait_for_async("the temp file to be removed", lambda: not temp_files(directory))
    assert not (directory / "big.bin").exists()
    assert list(directory.iterdir()) == []
    entry = wait_for_log(gateway.layout.log,
                         lambda e: e.get("path") == f"/abort-{t}/big.bin",
                         filename="transfer.log", what="transfer record")
    assert entry["ok"] is False
    async with sftp_as(gateway, "partner-a") as sftp:  # the server is still up
        assert set(await sftp.listdir(f"abort-{t}")) == {".", ".."}


async def test_closing_the_sftp_channel_mid_upload_discards_it(gateway):
    """The client ends the SFTP session (channel EOF/close) with the file still open: what was
    written is an interrupted upload, not a complete file."""
    t = unique_name()
    directory = gateway.layout.staging / "partner-a" / f"eof-{t}"
    directory.mkdir()
    async with connect(gateway.port, "partner-a", PARTNER_PASSWORD) as conn:
        sftp = await conn.start_sftp_client()
        handle = await sftp.open(f"eof-{t}/big.bin", "wb")
        await handle.write(os.urandom(1 << 20), 0)
        assert len(temp_files(directory)) == 1
        sftp.exit()
        await sftp.wait_closed()
        await wait_for_async("the temp file to be removed", lambda: not temp_files(directory))
        assert not (directory / "big.bin").exists()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_file(tmp_path_factory.mktemp("big") / "big-200m.bin", 200 << 20)


@pytest.mark.slow
@pytest.mark.parametrize("kill_group", [False, True], ids=["sftp-only", "sftp-and-ssh"])
def test_killed_openssh_put_leaves_nothing(gateway, keys, workdir, big_file, kill_group):
    """SIGKILL to ``sftp`` mid-``put``: alone (its ``ssh`` child then closes the channel), or
    with its ``ssh`` child (the TCP connection just drops)."""
    assert SFTP
    t = unique_name()
    directory = gateway.layout.staging / "partner-a" / f"kill-{t}"
    directory.mkdir()
    batch = workdir / "batch"
    batch.write_text(f"put {big_file} kill-{t}/big.bin\n")
    args = [SFTP, "-F", "/dev/null", "-P", str(gateway.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "PreferredAuthentications=publickey", "-i", str(keys.partner.private_path),
            "-l", "16000",  # Kbit/s: about 2 MB/s, so the 200 MiB put is surely still running
            "-b", str(batch), "partner-a@127.0.0.1"]
    proc = subprocess.Popen(args, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        def temp_size() -> int:
            temps = temp_files(directory)
            return temps[0].stat().st_size if temps else 0

        wait_for("the upload to start", lambda: temp_size() >= 1 << 20, timeout=60)
        first = temp_size()
        wait_for("the upload to grow", lambda: temp_size() > first, timeout=30)
        assert proc.poll() is None, "the put finished before it could be killed"
        if kill_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=30)
        wait_for("the temp file to be removed", lambda: not temp_files(directory))
        assert not (directory / "big.bin").exists()
        assert list(directory.iterdir()) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the ssh child, in the group we started
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


# -- brute-force defender ----------------------------------------------------------------------


@pytest.fixture
def defended_server(tmp_path: Path, gateway) -> Iterator[ServerThread]:
    config = write_config(tmp_path / "ssftp.yaml", """
        sftpPort: 0
        fsyncUploads: false
        defender:
          maxFailures: 3
          windowSeconds: 60
          banSeconds: 60
        users:
          stagingDir:
            - directory: guarded
              auth:
                username: guarded
                password: guarded-right-pw
        """)
    with beside(ServerThread(config, tmp_path / "data"), gateway) as server:
        yield server


async def test_defender_bans_after_repeated_wrong_passwords(defended_server):
    port = defended_server.port
    async with connect(port, "guarded", "guarded-right-pw") as conn, \
            conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == "/"  # the right password works before
    for _ in range(2):
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(port, "guarded", "wrong-password"):
                pass
    for password in ("wrong-password", "guarded-right-pw"):  # the third, and any while banned
        with pytest.raises(asyncssh.DisconnectError, match="address temporarily banned"):
            async with connect(port, "guarded", password):
                pass
    log_dir = defended_server.layout.log
    banned = wait_for_log(log_dir, lambda e: e.get("event") == "address banned",
                          what="'address banned'")
    assert banned["ip"] == "127.0.0.1"
    assert banned["seconds"] == 60
    refused = wait_for_log(
        log_dir,
        lambda e: (e.get("event") == "login" and e.get("ok") is False
                   and "banned" in str(e.get("reason", ""))),
        what="refused login of a banned address")
    assert refused["user"] == "guarded"
    failures = [e for e in log_entries(log_dir)
                if e.get("event") == "login" and e.get("ok") is False and "reason" not in e]
    assert len(failures) == 3
