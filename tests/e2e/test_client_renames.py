"""Clients that upload to a name of their choosing and then rename (issue 26): Node's
ssh2-sftp-client (``posixRename``), JSch (``rename``), gvfs (``.giosaveXXXXXX``), played by
paramiko, the file reaches clean/ under its final name only; and the renames a staging
account (no ``rename`` permission) is still refused, with the reason, by asyncssh's client.

The first part runs the scan pipeline as ``ssftp up`` does (server and watcher in one process,
so uploads are published whole), with a rename grace long enough that the test's rename
always comes first, however slow the machine. How long the watcher waits is
tests/unit/test_scan_readiness.py's; the rule itself tests/unit/test_server_renames.py's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from ssftp.audit_history import AuditSource, audit_logs, file_history, parse_query
from tests.support.gateway import unique_name
from tests.support.pipeline import Pipeline, pipeline_config, running_pipeline
from tests.support.sftp import assert_denied, paramiko_sftp, sftp_as, upload
from tests.support.waiting import wait_for

# Long beside a client's rename on a loaded machine: the rename always comes first.
SETTLE_SECONDS = 5


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Pipeline]:
    config = functools.partial(pipeline_config, settle_seconds=SETTLE_SECONDS)
    with running_pipeline(tmp_path_factory.mktemp("renames"), config) as stack:
        yield stack


def _upload_and_rename(pipeline: Pipeline, workdir: Path, temp: str, final: str,
                       rename: str) -> bytes:
    """put to ``temp``, then ``rename`` (the paramiko method) it to ``final``; the content."""
    content = os.urandom(50_000)
    local = workdir / "local.bin"
    local.write_bytes(content)
    with paramiko_sftp(pipeline.server.port) as sftp:
        sftp.put(str(local), temp)
        getattr(sftp, rename)(temp, final)
        assert final in sftp.listdir(".")
    return content


def _assert_scanned_only_as(pipeline: Pipeline, temp: str, final: str,
                            content: bytes) -> None:
    cleaned = pipeline.clean(final)
    wait_for(f"{final} in clean", cleaned.exists)
    assert cleaned.read_bytes() == content
    assert [record["file"] for record in pipeline.scans_of(final)] == [f"partner-a/{final}"]
    assert not pipeline.scans_of(temp)
    assert not pipeline.clean(temp).exists()
    assert not pipeline.staged(temp).exists()


@pytest.mark.parametrize("rename", ["posix_rename", "rename"])
def test_an_upload_renamed_after_its_close_is_scanned_under_its_final_name_only(
        pipeline: Pipeline, workdir: Path, rename: str):
    """ssh2-sftp-client's ``posixRename`` (posix-rename@openssh.com), JSch's ``rename``
    (SSH_FXP_RENAME): the name is the application's, not one ssftp knows as a temp name."""
    t = unique_name()
    temp, final = f"report-{t}.csv.tmp123", f"report-{t}.csv"
    content = _upload_and_rename(pipeline, workdir, temp, final, rename)
    _assert_scanned_only_as(pipeline, temp, final, content)
    (renamed,) = [r for r in pipeline.audit() if r.get("event") == "rename"
                  and r.get("file") == f"staging/partner-a/{final}"]
    assert renamed["source"] == f"staging/partner-a/{temp}"
    assert renamed["size"] == len(content)
    assert renamed["user"] == "partner-a"
    # ``ssftp status``: by its final name, the rename and the scan; by the name the client
    # uploaded to, the rename, which names the file it became.
    root = pipeline.layout.root
    sources = [AuditSource(audit_logs(pipeline.layout.log), root, None)]
    history = file_history(sources, parse_query(f"partner-a/{final}", root))
    assert [record["event"] for record in history] == ["rename", "scan"]
    assert history[1]["destination"] == f"clean/partner-a/{final}"
    assert file_history(sources, parse_query(f"partner-a/{temp}", root)) == [renamed]


def test_a_gvfs_temp_name_is_never_scanned_and_renamed_needs_only_upload(pipeline: Pipeline,
                                                                         workdir: Path):
    """Nautilus over gvfs's sftp backend writes ``.giosaveXXXXXX`` and renames."""
    t = unique_name()
    temp, final = f".giosave{t[:6]}", f"notes-{t}.txt"
    content = _upload_and_rename(pipeline, workdir, temp, final, "rename")
    _assert_scanned_only_as(pipeline, temp, final, content)


# -- refusals: a staging account still has no general rename -----------------------------------


def _staged(gateway, name: str) -> Path:
    return gateway.layout.staging / "partner-a" / name


async def test_an_upload_may_not_move_to_another_directory_nor_hide_as_a_temp_name(gateway):
    t = unique_name()
    name = f"moved-{t}.csv"
    async with sftp_as(gateway, "partner-a") as sftp:
        await upload(sftp, name, b"stays")
        await sftp.mkdir(f"sub-{t}")
        refused = await assert_denied(sftp, sftp.rename(name, f"sub-{t}/{name}"))
        assert "within its directory" in refused.reason
        for hidden in (f"{name}.filepart", f".in.{name}", f".giosave{t[:6]}"):
            refused = await assert_denied(sftp, sftp.posix_rename(name, hidden))
            assert "temp name" in refused.reason
        await assert_denied(sftp, sftp.rename(name, f".ssftp-tmp-{t}"))  # ssftp's own
        # Still its own recent upload: a rename within its directory is allowed.
        await sftp.rename(name, f"final-{t}.csv")
    assert _staged(gateway, f"final-{t}.csv").read_bytes() == b"stays"
    assert sorted(p.name for p in _staged(gateway, ".").iterdir() if t in p.name) == [
        f"final-{t}.csv", f"sub-{t}"]
    assert not list(_staged(gateway, f"sub-{t}").iterdir())


async def test_a_file_the_account_did_not_upload_may_not_be_renamed(gateway):
    """A file another writer put in staging, the account's upload whose name another writer
    filled with a file of its own once the scanner had claimed it, a directory it created:
    not its to rename."""
    t = unique_name()
    dropped = _staged(gateway, f"dropped-{t}.csv")
    claimed = gateway.layout.staging / ".ssftp-claims" / "test-owner" / f"replaced-{t}.csv"
    dropped.parent.mkdir(parents=True, exist_ok=True)
    dropped.write_bytes(b"another writer's")
    async with sftp_as(gateway, "partner-a") as sftp:
        refused = await assert_denied(sftp, sftp.rename(dropped.name, f"mine-{t}.csv"))
        assert "'rename' permission" in refused.reason
        await upload(sftp, f"replaced-{t}.csv", b"uploaded")
        claimed.parent.mkdir(parents=True, exist_ok=True)  # the scanner took it (the test
        os.rename(_staged(gateway, f"replaced-{t}.csv"), claimed)  # plays the claim)
        _staged(gateway, f"replaced-{t}.csv").write_bytes(b"another writer's")
        await assert_denied(sftp, sftp.posix_rename(f"replaced-{t}.csv", f"mine-{t}.csv"))
        await sftp.mkdir(f"dir-{t}")  # remembered for its times, but not an upload
        await assert_denied(sftp, sftp.rename(f"dir-{t}", f"dir2-{t}"))
    assert dropped.read_bytes() == b"another writer's"
    assert _staged(gateway, f"replaced-{t}.csv").read_bytes() == b"another writer's"
    assert not _staged(gateway, f"mine-{t}.csv").exists()
    assert _staged(gateway, f"dir-{t}").is_dir()
    assert not _staged(gateway, f"dir2-{t}").exists()


async def test_an_upload_renamed_onto_an_existing_file_replaces_it_only_with_overwrite(gateway):
    t = unique_name()
    async with sftp_as(gateway, "partner-a") as sftp:
        await upload(sftp, f"first-{t}.csv", b"first")
        await upload(sftp, f"second-{t}.csv", b"second")
        with pytest.raises(asyncssh.SFTPFailure):  # SSH_FXP_RENAME never replaces
            await sftp.rename(f"second-{t}.csv", f"first-{t}.csv")
        refused = await assert_denied(sftp, sftp.posix_rename(f"second-{t}.csv",
                                                              f"first-{t}.csv"))
        assert "'overwrite' permission" in refused.reason
    assert _staged(gateway, f"first-{t}.csv").read_bytes() == b"first"
    assert _staged(gateway, f"second-{t}.csv").read_bytes() == b"second"


async def test_times_set_after_the_rename_apply_and_a_claimed_upload_is_no_such_file(gateway):
    """The renamed upload is still the account's for its times (asyncssh ``put(preserve)``
    after a rename); once the scanner has claimed an upload (the test plays the claim) its
    rename fails with no such file: the window has ended."""
    t = unique_name()
    claimed = gateway.layout.staging / ".ssftp-claims" / "test-owner" / f"claimed-{t}.csv"
    claimed.parent.mkdir(parents=True, exist_ok=True)
    async with sftp_as(gateway, "partner-a") as sftp:
        await upload(sftp, f"up-{t}.tmp", b"data")
        await sftp.posix_rename(f"up-{t}.tmp", f"up-{t}.csv")
        await sftp.setstat(f"up-{t}.csv", asyncssh.SFTPAttrs(atime=1_000_000_000,
                                                             mtime=1_000_000_000))
        await upload(sftp, f"claimed-{t}.csv", b"data")
        os.rename(_staged(gateway, f"claimed-{t}.csv"), claimed)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.rename(f"claimed-{t}.csv", f"late-{t}.csv")
    assert _staged(gateway, f"up-{t}.csv").stat().st_mtime == 1_000_000_000
    assert claimed.read_bytes() == b"data"
    assert not _staged(gateway, f"late-{t}.csv").exists()
