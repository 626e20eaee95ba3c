"""Times set by path right after an upload are kept (issue 14), on a staging account that has no
``chtimes``: asyncssh ``put(preserve=True)``, one on another connection (rclone's pool), and
``rclone copy`` twice (the second copies nothing); once the scanner has claimed the file they
no longer reach it (no such file). Anything else still needs ``chtimes`` and is refused with
the reason. What the server remembers of recent uploads is in
tests/unit/test_server_recent_uploads.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import asyncssh
import pytest

from testkit.clients import Target, missing, rclone, rclone_remote
from testkit.sftp_client import run_sftp
from tests.support.gateway import unique_name

MTIME = 1_000_000_000  # 2001-09-09, far from now


async def _connect(gateway, keys, user: str = "partner-a") -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", gateway.port, username=user, known_hosts=None,
                                  config=[], agent_path=None,
                                  client_keys=[keys.partner.private_path])


def _local(workdir: Path, name: str, content: bytes = b"partner data\n") -> Path:
    path = workdir / name
    path.write_bytes(content)
    os.utime(path, (MTIME, MTIME))
    return path


def _staged(gateway, name: str) -> Path:
    return gateway.layout.staging / "partner-a" / name


async def test_put_preserve_keeps_mtime(gateway, keys, workdir):
    name = f"preserved-{unique_name()}.csv"
    async with await _connect(gateway, keys) as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(workdir, name), name, preserve=True)  # SETSTAT after close
        assert (await sftp.stat(name)).mtime == MTIME
    assert _staged(gateway, name).stat().st_mtime == MTIME


async def test_times_set_on_another_connection_apply(gateway, keys, workdir):
    """rclone sets the mtime on whichever pooled connection is free."""
    name = f"pooled-{unique_name()}.csv"
    async with await _connect(gateway, keys) as first, first.start_sftp_client() as sftp:
        await sftp.put(_local(workdir, name), name)
    async with await _connect(gateway, keys) as second, second.start_sftp_client() as sftp:
        await sftp.setstat(name, asyncssh.SFTPAttrs(atime=MTIME, mtime=MTIME))
    assert _staged(gateway, name).stat().st_mtime == MTIME


async def test_times_do_not_reach_a_file_the_scanner_claimed(gateway, keys, workdir):
    """Once the scanner has claimed the upload (the test plays the claim: a rename into
    staging's claims), a SETSTAT by its name changes nothing: a change during the scan would
    make the scanner retry the file. It is answered OK: the client sent it as part of its
    upload, which would fail for it (and be sent again) on an error (before: no such file)."""
    name = f"claimed-{unique_name()}.csv"
    claimed = gateway.layout.staging / ".ssftp-claims" / "test-owner" / name
    claimed.parent.mkdir(parents=True, exist_ok=True)
    async with await _connect(gateway, keys) as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(workdir, name), name)
        os.rename(_staged(gateway, name), claimed)
        before = claimed.stat()
        await sftp.setstat(name, asyncssh.SFTPAttrs(permissions=0o600, atime=MTIME,
                                                    mtime=MTIME))
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="owner"):
            await sftp.setstat(name, asyncssh.SFTPAttrs(uid=0, gid=0))  # still checked
    after = claimed.stat()
    assert (after.st_mtime_ns, after.st_ctime_ns, after.st_mode) == (
        before.st_mtime_ns, before.st_ctime_ns, before.st_mode)


async def test_mode_and_times_of_a_recent_upload_apply_by_its_name(gateway, keys, workdir):
    """asyncssh ``put(preserve=True)`` sets mode and times after the close: both apply."""
    name = f"moded-{unique_name()}.csv"
    local = _local(workdir, name)
    local.chmod(0o600)
    async with await _connect(gateway, keys) as conn, conn.start_sftp_client() as sftp:
        await sftp.put(local, name, preserve=True)
    info = _staged(gateway, name).stat()
    assert (info.st_mode & 0o777, info.st_mtime) == (0o600, MTIME)


async def test_times_of_another_file_need_chtimes(gateway, keys, workdir):
    """A file the account did not just upload: a real refusal with the reason, nothing
    changed; also a file that replaced the upload under its name."""
    name = f"placed-{unique_name()}.csv"
    placed = _staged(gateway, name)
    placed.write_bytes(b"not uploaded by this session\n")
    before = placed.stat().st_mtime
    async with await _connect(gateway, keys) as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="'chtimes' permission"):
            await sftp.setstat(name, asyncssh.SFTPAttrs(atime=MTIME, mtime=MTIME))
        uploaded = f"replaced-{unique_name()}.csv"
        await sftp.put(_local(workdir, uploaded), uploaded)
        replacement = _staged(gateway, uploaded + ".new")
        replacement.write_bytes(b"someone else's\n")
        os.replace(replacement, _staged(gateway, uploaded))
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="'chtimes' permission"):
            await sftp.setstat(uploaded, asyncssh.SFTPAttrs(atime=MTIME, mtime=MTIME))
    assert placed.stat().st_mtime == before
    assert _staged(gateway, uploaded).stat().st_mtime != MTIME


def _transferred_files(log: str) -> int:
    """The file count in rclone's final stats (``Transferred:   3 / 3, 100%``); none is 0."""
    counts = re.findall(r"^Transferred:\s+(\d+) / \d+, ", log, re.MULTILINE)
    return int(counts[-1]) if counts else 0


def test_second_rclone_copy_copies_nothing(gateway, keys, workdir):
    if reason := missing("rclone"):
        pytest.skip(reason)
    tree = workdir / "tree"
    (tree / "sub").mkdir(parents=True)
    for relative in ("a.csv", "b.csv", "sub/c.csv"):
        _local(tree, relative, f"{relative}\n".encode() * 50)
    target = Target(gateway.port, "partner-a", keys.partner.private_path)
    remote = rclone_remote(target, f"rclone-{unique_name()}")
    first = rclone(["copy", str(tree), remote], cwd=workdir)
    assert first.returncode == 0, first.output
    assert first.output.count("Copied (new)") == 3, first.output
    assert _transferred_files(first.output) == 3, first.output
    second = rclone(["copy", str(tree), remote], cwd=workdir)
    assert second.returncode == 0, second.output
    assert "Copied" not in second.output and "Updated" not in second.output, second.output
    assert _transferred_files(second.output) == 0, second.output
    assert re.search(r"^Checks:\s+3 / 3, 100%", second.output, re.MULTILINE), second.output


def test_put_rp_sets_the_times_of_the_directories_it_created(gateway, keys, workdir):
    """OpenSSH ``put -Rp`` (and Midnight Commander) set a directory's times once its files
    are in: for a directory the account just created, as for its uploads (before: refused
    without chtimes, an error per directory)."""
    tree = workdir / f"tree-{unique_name()}"
    (tree / "inner").mkdir(parents=True)
    for path in (tree / "a.txt", tree / "inner" / "b.txt"):
        _local(path.parent, path.name)
    for directory in (tree / "inner", tree):
        os.utime(directory, (MTIME, MTIME))
    result = run_sftp(gateway.port, "partner-a", [f"put -Rp {tree.name}"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode == 0, result.stderr
    assert "remote setstat" not in result.stderr.lower(), result.stderr
    staged = _staged(gateway, tree.name)
    assert (staged / "inner" / "b.txt").stat().st_mtime == MTIME
    assert staged.stat().st_mtime == (staged / "inner").stat().st_mtime == MTIME
