"""The SFTP server on a bad day and against hostile input (issue 12), with real clients.

A full disk: an upload whose WRITE failed is never published, whatever the client does next
(every client closes the handle). A FIFO in a consumer's directory: opening it is refused at
once, and the other sessions go on. A directory whose entries come and go (the scanner claims
uploads) still lists. ssftp's reserved names in any case, symlink sizes, attribute changes
without the permission, names with control characters, and the periodic removal of temp files
that a crash left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from ssftp.layout import TEMP_PREFIX
from testkit.files import make_random_file
from testkit.sftp_client import run_sftp
from tests.support.config import PARTNER_PASSWORD, gateway_config, write_config
from tests.support.gateway import ServerThread, beside, unique_name
from tests.support.logs import log_entries, wait_for_log
from tests.support.sftp import assert_denied, download, sftp_as, temp_files, upload
from tests.support.waiting import wait_for

TMPFS_BYTES = 1 << 20

# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(gateway) -> Iterator[tuple[str, Path]]:
    """A 1 MiB tmpfs mounted as a directory of partner-a's staging root: ``(virtual, host)``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory = gateway.layout.staging / "partner-a" / f"full-{unique_name()}"
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                    str(directory)], check=True)
    try:
        yield f"/{directory.name}", directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)
        directory.rmdir()


def fill(directory: Path) -> None:
    """Write a filler file until the filesystem has no byte left."""
    with contextlib.suppress(OSError), (directory / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()


def transfer_record(gateway, virtual: str) -> dict:
    return wait_for_log(gateway.layout.log, lambda e: e.get("path") == virtual,
                        filename="transfer.log", what=f"transfer record of {virtual}")


def assert_not_published(gateway, directory: Path, virtual: str, name: str) -> None:
    assert not (directory / name).exists()
    assert not temp_files(directory)
    record = transfer_record(gateway, f"{virtual}/{name}")
    assert record["ok"] is False
    assert "No space left on device" in record["error"], record


def test_openssh_upload_larger_than_the_disk_is_not_published(gateway, keys, tiny_disk, workdir):
    virtual, directory = tiny_disk
    local = make_random_file(workdir / "big.bin", 4 * TMPFS_BYTES)
    result = run_sftp(gateway.port, "partner-a", [f"put {local} {virtual}/big.bin"],
                      cwd=workdir, key=keys.partner.private_path)
    assert result.returncode != 0, result.stdout
    assert_not_published(gateway, directory, virtual, "big.bin")


async def test_asyncssh_upload_larger_than_the_disk_is_not_published(gateway, tiny_disk, workdir):
    virtual, directory = tiny_disk
    local = make_random_file(workdir / "big.bin", 4 * TMPFS_BYTES)
    async with sftp_as(gateway, "partner-a") as sftp:
        with pytest.raises(asyncssh.SFTPError):
            await sftp.put(local, f"{virtual}/big.bin")
    assert_not_published(gateway, directory, virtual, "big.bin")


async def test_write_to_a_full_disk_fails_the_close_and_publishes_no_empty_file(gateway,
                                                                               tiny_disk):
    """The disk is full before the upload. A WRITE is answered before it reaches the disk
    (server.off_loop), so its failure is told at the upload's next request: an FSYNC (after
    the write), a WRITE, and the close, which publishes nothing: no 0-byte file appears."""
    virtual, directory = tiny_disk
    fill(directory)
    async with sftp_as(gateway, "partner-a") as sftp:
        handle = await sftp.open(f"{virtual}/empty.bin", "wb")
        await handle.write(b"x" * 65536, 0)
        with pytest.raises(asyncssh.SFTPFailure) as syncing:
            await handle.fsync()
        assert "No space left on device" in syncing.value.reason
        with pytest.raises(asyncssh.SFTPFailure) as writing:
            await handle.write(b"y", 65536)
        assert "will not be published" in writing.value.reason
        with pytest.raises(asyncssh.SFTPFailure) as closing:
            await handle.close()
        assert "not published" in closing.value.reason
        assert "No space left on device" in closing.value.reason
        assert await sftp.realpath(".") == "/"  # the session goes on
    assert_not_published(gateway, directory, virtual, "empty.bin")


# -- special files -------------------------------------------------------------------------------


@pytest.fixture
def clean_fifo(gateway) -> Iterator[Path]:
    """A FIFO in consumer-a's clean directory, as any writer on the share could make one."""
    fifo = gateway.layout.clean / "partner-a" / f"fifo-{unique_name()}"
    os.mkfifo(fifo)
    try:
        yield fifo
    finally:
        fifo.unlink()


def release_readers(fifo: Path) -> None:
    """Let an open() blocked on the FIFO return: a writer comes (O_RDWR never blocks)."""
    os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))


async def test_a_fifo_is_refused_and_other_sessions_keep_working(gateway, clean_fifo):
    ok = gateway.layout.clean / "partner-a" / f"ok-{unique_name()}.txt"
    ok.write_bytes(b"still served")

    async def open_the_fifo() -> None:
        async with sftp_as(gateway, "consumer-a") as sftp:
            error = await assert_denied(sftp, download(sftp, clean_fifo.name))
            assert "not a regular file" in error.reason

    async def another_session() -> bytes:
        async with sftp_as(gateway, "consumer-a") as sftp:
            assert clean_fifo.name in await sftp.listdir("/")
            return await download(sftp, ok.name)

    first = asyncio.create_task(open_the_fifo())
    await asyncio.wait([first], timeout=2)  # the FIFO open reaches the server first
    second = asyncio.create_task(another_session())
    try:
        done, _ = await asyncio.wait([second], timeout=30)
        assert second in done, "a second session hung while one session opened a FIFO"
        assert second.result() == b"still served"
        done, _ = await asyncio.wait([first], timeout=30)
        assert first in done, "opening the FIFO hung"
        first.result()
    finally:
        release_readers(clean_fifo)  # on failure: unblock the server, so the tasks can end
        for task in (first, second):
            with contextlib.suppress(Exception):
                await task


# -- listings ------------------------------------------------------------------------------------


def churn(directory: Path, stop: threading.Event) -> None:
    """Files appearing and vanishing, as uploads do while the scanner claims them."""
    names = [directory / f"f{number:03}" for number in range(100)]
    while not stop.is_set():
        for path in names:
            path.write_bytes(b"x")
        for path in names:
            path.unlink()


async def test_listing_skips_entries_that_vanish_meanwhile(gateway):
    directory = gateway.layout.staging / "partner-a" / f"churn-{unique_name()}"
    directory.mkdir()
    stop = threading.Event()
    worker = threading.Thread(target=churn, args=(directory, stop), daemon=True)
    worker.start()
    failures: list[str] = []
    listings = 0
    try:
        async with sftp_as(gateway, "partner-a") as sftp:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    await sftp.listdir(f"/{directory.name}")
                except asyncssh.SFTPError as exc:
                    failures.append(str(exc.reason))
                listings += 1
    finally:
        stop.set()
        worker.join(timeout=30)
    assert listings > 0
    assert failures == [], f"{len(failures)} of {listings} listings failed: {failures[0]}"


async def test_reserved_names_in_other_case_are_neither_shown_nor_addressable(gateway):
    t = unique_name()
    root = gateway.layout.staging / "partner-a"
    (root / f".SSFTP-TMP-{t}").write_bytes(b"looks like ssftp's own")
    async with sftp_as(gateway, "partner-a") as sftp:
        assert f".SSFTP-TMP-{t}" not in await sftp.listdir("/")
        await assert_denied(sftp, sftp.stat(f".SSFTP-TMP-{t}"))
        await assert_denied(sftp, upload(sftp, f".SSFTP-tmp-{t}x", b"planted"))
        await assert_denied(sftp, sftp.mkdir(f".Ssftp-claims-{t}"))
    assert not (root / f".SSFTP-tmp-{t}x").exists()
    assert not (root / f".Ssftp-claims-{t}").exists()


CONTROL_NAMES = ["line\nbreak", "carriage\rreturn", "tab\there", "escape\x1b[31m", "del\x7f"]


@pytest.mark.parametrize("bad", CONTROL_NAMES, ids=repr)
async def test_names_with_control_characters_are_refused(gateway, bad):
    t = unique_name()
    root = gateway.layout.staging / "partner-a"
    async with sftp_as(gateway, "partner-a") as sftp:
        error = await assert_denied(sftp, upload(sftp, f"{bad}-{t}.txt", b"x"))
        assert "control characters" in error.reason
        await assert_denied(sftp, sftp.mkdir(f"{bad}-{t}"))
        await upload(sftp, f"fine-{t}.txt.filepart", b"x")
        await assert_denied(sftp, sftp.rename(f"fine-{t}.txt.filepart", f"{bad}-{t}.txt"))
    assert sorted(p.name for p in root.iterdir() if t in p.name) == [f"fine-{t}.txt.filepart"]


# -- attributes ----------------------------------------------------------------------------------


async def test_a_symlink_shows_no_target_length(gateway):
    directory = gateway.layout.clean / "partner-a" / f"link-{unique_name()}"
    directory.mkdir()
    (directory / "link").symlink_to("a-long-target-name-" * 10)
    async with sftp_as(gateway, "consumer-a") as sftp:
        attrs = await sftp.lstat(f"/{directory.name}/link")
        assert stat.S_ISLNK(attrs.permissions)
        assert not attrs.size
        listed = {entry.filename: entry.attrs for entry in await sftp.readdir(directory.name)}
        assert stat.S_ISLNK(listed["link"].permissions)
        assert not listed["link"].size


async def test_attribute_changes_without_the_permission_are_refused(gateway):
    t = unique_name()
    staged = gateway.layout.staging / "partner-a" / f"attrs-{t}.txt"
    clean = gateway.layout.clean / "partner-a" / f"attrs-{t}.txt"
    clean.write_bytes(b"clean")
    async with sftp_as(gateway, "partner-a") as sftp:
        # Not its own upload of the last moments: those take times and a mode by path too
        # (tests/test_mtimes.py).
        staged.write_bytes(b"staged")
        before = staged.stat()
        await assert_denied(sftp, sftp.chmod(staged.name, 0o600))
        await assert_denied(sftp, sftp.utime(staged.name, (1, 1)))
        await assert_denied(sftp, sftp.chown(staged.name, 0, 0))
        # Its own upload in progress may take a mode and times (``put -p``), never an owner.
        async with sftp.open(f"own-{t}.txt", "wb") as handle:
            await handle.write(b"own")
            await handle.utime((1000, 2000))
            await assert_denied(sftp, handle.chown(0, 0))
    after = staged.stat()
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert (staged.parent / f"own-{t}.txt").stat().st_mtime == 2000
    async with sftp_as(gateway, "consumer-a") as sftp:
        await assert_denied(sftp, sftp.utime(clean.name, (1, 1)))
        await assert_denied(sftp, sftp.chmod(clean.name, 0o777))
    assert clean.stat().st_mtime > 1
    assert stat.S_IMODE(clean.stat().st_mode) != 0o777
    refusals = [e for e in log_entries(gateway.layout.log)
                if e.get("event") == "refused" and e.get("op") == "setstat"
                and f"attrs-{t}" in str(e.get("path"))]
    assert {e["user"] for e in refusals} == {"partner-a", "consumer-a"}


def test_openssh_recursive_put_is_not_refused_a_directory_mode(gateway, keys, workdir):
    """The one refusal still answered OK: ``put -r`` sets each directory's mode by path."""
    top = workdir / f"tree-{unique_name()}"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "file.txt").write_bytes(b"in a tree")
    result = run_sftp(gateway.port, "partner-a", [f"put -r {top.name}"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode == 0, result.stderr
    assert "denied" not in result.stderr
    staged = gateway.layout.staging / "partner-a" / top.name
    assert (staged / "sub" / "file.txt").read_bytes() == b"in a tree"


# -- temp files left by a crash ------------------------------------------------------------------


@pytest.fixture
def sweeping_server(tmp_path: Path, keys, gateway) -> Iterator[ServerThread]:
    """The standard server, sweeping stale temp files every fraction of a second."""
    config = write_config(tmp_path / "ssftp.yaml", gateway_config(keys))
    with beside(ServerThread(config, tmp_path / "data", temp_sweep_seconds=0.2),
                gateway) as server:
        yield server


def test_stale_temp_files_are_removed_while_the_server_runs(sweeping_server, monkeypatch):
    """The periodic sweep (that young ones are kept is the sweep function's unit test: a
    file's age is its ctime, which a test cannot set back)."""
    monkeypatch.setattr("server.app.STALE_TEMP_SECONDS", 0.0)
    layout = sweeping_server.layout
    (layout.staging / "partner-a").mkdir(exist_ok=True)
    stale = layout.staging / "partner-a" / f"{TEMP_PREFIX}{unique_name()}"
    stale.write_bytes(b"left by a crash")
    wait_for("the stale temp file to be removed", lambda: not stale.exists(), timeout=30)
    wait_for_log(layout.log, lambda e: (e.get("event") == "removed stale upload temp file"
                                        and e.get("path") == str(stale)),
                 what="the removal logged")
    # The server still serves.
    result = run_sftp(sweeping_server.port, "partner-a", ["pwd"], cwd=layout.root,
                      password=PARTNER_PASSWORD)
    assert result.returncode == 0, result.stderr
