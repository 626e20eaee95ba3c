"""ssftp.layout: the names ssftp reserves (temp files, partial uploads, in any case) and the sweeps
of what is left of unfinished uploads, by the server's clock, never a client's mtime."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ssftp.layout import (
    CLAIMS_DIR,
    PARTIALS_DIR,
    TEMP_PREFIX,
    final_upload_name,
    is_partial_upload_name,
    is_reserved_name,
    remove_stale_partial_uploads,
    remove_stale_temp_files,
)
from ssftp.scan.queue import is_candidate


def test_stale_temp_files_are_removed_by_the_servers_clock(tmp_path):
    """Young ones are kept (another instance may be receiving them), whatever their mtime."""
    old = tmp_path / "a" / f"{TEMP_PREFIX}old"
    young = tmp_path / f"{TEMP_PREFIX}young"
    normal = tmp_path / "a" / "report.csv"
    old.parent.mkdir()
    for path in (old, young, normal):
        path.write_text("x")
    os.utime(young, (0, 0))  # a client's mtime says nothing of when the server wrote it
    created = time.time()
    assert remove_stale_temp_files(tmp_path, 24 * 3600, now=created + 3600) == []
    assert sorted(remove_stale_temp_files(tmp_path, 24 * 3600, now=created + 3 * 24 * 3600)) \
        == sorted([old, young])
    assert not old.exists() and not young.exists() and normal.exists()


@pytest.mark.parametrize("name", [".SSFTP-tmp-x", ".Ssftp-claims", ".SSFTP-"])
def test_reserved_names_are_matched_in_any_case(name):
    assert is_reserved_name(name)


# --- partial uploads: their names and their sweep ----------------------------------------------


@pytest.mark.parametrize("name", [
    "report.csv.filepart",  # WinSCP, rclone
    ".in.report.csv",  # lftp 4.9 xfer:use-temp-file (xfer:temp-file-name .in.*)
    ".in.report.csv.",  # the same, other lftp versions
    ".in.x",
    ".giosaveAB12cd",  # gvfs's SFTP backend replacing a file (Nautilus, gio)
    ".goutputstream-XY34zw",  # GLib's local files (gedit) on an sshfs mount
])
def test_client_temp_names_are_uploads_in_progress(tmp_path: Path, name: str) -> None:
    assert is_partial_upload_name(name)
    assert not is_candidate(tmp_path, tmp_path / "partner-a" / name)


@pytest.mark.parametrize("name", ["report.csv", ".in.", ".inbox", "in.report.", "x.filepart.csv",
                                  ".giosave", "giosave1", ".goutputstream-", "x.giosave1"])
def test_other_names_are_not(tmp_path: Path, name: str) -> None:
    assert not is_partial_upload_name(name)
    assert is_candidate(tmp_path, tmp_path / "partner-a" / name)


@pytest.mark.parametrize(("name", "final"), [
    ("report.csv", "report.csv"),
    ("x.filepart.csv", "x.filepart.csv"),
    ("setup.exe.filepart", "setup.exe"),
    (".in.setup.exe", "setup.exe"),
    (".in.setup.exe.", "setup.exe"),
    (".in..", None),
    (".giosaveAB12cd", None),
    (".goutputstream-XY34zw", None),
])
def test_the_final_name_an_upload_stands_for(name: str, final: str | None) -> None:
    """What filePatterns check at the OPEN of a client temp name (server.sftp_session)."""
    assert final_upload_name(name) == final


def test_stale_partial_uploads_are_removed_after_the_ttl(tmp_path: Path) -> None:
    """Age is the server's clock (ctime): the same files are kept a minute before the TTL
    and removed a second after it, whatever their mtime says."""
    ttl = 24 * 3600

    def make(relative: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        return path

    old = [make(f"partner-a/{PARTIALS_DIR}/0123abcd"),
           make("partner-a/sub/big.iso.filepart"),
           make("partner-a/.in.report.csv"),
           make("partner-a/dir.filepart/inner.filepart")]
    kept = [make("partner-a/report.csv"),  # a complete upload: the scanner's
            make("partner-a/dir.filepart/inner.txt"),  # a directory named like one is not
            make(f"{CLAIMS_DIR}/partner-a/claimed.filepart"),
            make(f"partner-a/{TEMP_PREFIX}0123")]  # the temp sweep's (its own TTL)
    created = time.time()
    assert remove_stale_partial_uploads(tmp_path, ttl, client_temp_names=True,
                                        now=created + ttl - 60) == []  # may still be resumed
    assert sorted(remove_stale_partial_uploads(tmp_path, ttl, client_temp_names=True,
                                               now=created + ttl + 1)) == sorted(old)
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in kept)


def test_a_client_set_mtime_does_not_keep_a_partial_upload(tmp_path: Path) -> None:
    """A client sets the mtime of its upload (SETSTAT on the open handle, ``put -p``): a
    partial dated 2100 is as old as its last change, and one dated 1970 as young."""
    future = tmp_path / "partner-a" / "future.filepart"
    past = future.with_name("past.filepart")
    future.parent.mkdir()
    for path, when in ((future, 4_102_444_800), (past, 0)):
        path.write_bytes(b"x")
        os.utime(path, (when, when))
    now = time.time()
    assert remove_stale_partial_uploads(tmp_path, 600, client_temp_names=True, now=now) == []
    assert sorted(remove_stale_partial_uploads(tmp_path, 600, client_temp_names=True,
                                               now=now + 601)) == sorted([future, past])


def test_clean_files_with_client_temp_names_are_never_removed(tmp_path: Path) -> None:
    """In clean/ only the server's partials go: ``.in.x`` there passed its scan (before that
    name counted as in progress)."""
    files = {name: tmp_path / "partner-a" / name
             for name in (".in.settings", "old.filepart", f"{PARTIALS_DIR}/0123abcd")}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert remove_stale_partial_uploads(tmp_path, 86400, client_temp_names=False,
                                        now=time.time() + 10 * 86400) == [
        files[f"{PARTIALS_DIR}/0123abcd"]]
    assert files[".in.settings"].exists() and files["old.filepart"].exists()
