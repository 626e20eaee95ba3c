"""server.renames: which rename of its own upload a staging account may make without the
``rename`` permission (the checks by name, and the file at the name), with the registry of
recent uploads (server.recent_uploads) as the server asks it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.jail import Jail, JailPath
from server.recent_uploads import RecentUploads
from server.renames import NOT_OWN_UPLOAD, require_own_upload, require_rename_in_place
from ssftp.errors import Refused


def _at(jail: Jail, virtual: str) -> JailPath:
    return jail.resolve(virtual.encode(), follow_final=False)


def _published(path: Path, recent: RecentUploads, username: str = "partner-a") -> None:
    path.write_bytes(b"uploaded")
    info = path.stat()
    recent.remember(username, path, (info.st_dev, info.st_ino))


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    (tmp_path / "sub").mkdir()
    return Jail(tmp_path)


@pytest.mark.parametrize("source, target", [
    ("/report.csv.tmp123", "/report.csv"),
    ("/.giosave", "/x"),
    ("/sub/a", "/sub/b"),
    ("/sub/../a", "/b"),  # the same directory, however it is written
])
def test_a_rename_within_the_directory_to_a_final_name_passes(jail: Jail, source: str,
                                                              target: str) -> None:
    require_rename_in_place(_at(jail, source), _at(jail, target))


@pytest.mark.parametrize("source, target, reason", [
    ("/a", "/sub/a", "within its directory"),
    ("/sub/a", "/a", "within its directory"),
    ("/a", "/a.filepart", "temp name"),
    ("/a", "/.in.a", "temp name"),
    ("/a", "/.giosaveAB12CD", "temp name"),
    ("/a", "/.goutputstream-AB12CD", "temp name"),
])
def test_moving_or_hiding_an_upload_is_refused_with_the_reason(jail: Jail, source: str,
                                                                target: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        require_rename_in_place(_at(jail, source), _at(jail, target))


def test_the_accounts_recent_upload_at_its_name_may_be_renamed(tmp_path: Path) -> None:
    recent = RecentUploads()
    path = tmp_path / "report.csv.tmp123"
    _published(path, recent)
    require_own_upload(os.lstat(path), recent.identity("partner-a", path))


def test_another_accounts_or_an_old_upload_is_refused(tmp_path: Path) -> None:
    now = [0.0]
    recent = RecentUploads(seconds=60, clock=lambda: now[0])
    path = tmp_path / "report.csv.tmp123"
    _published(path, recent)
    with pytest.raises(Refused, match="'rename' permission"):
        require_own_upload(os.lstat(path), recent.identity("partner-b", path))
    now[0] = 60.0
    with pytest.raises(Refused) as refused:
        require_own_upload(os.lstat(path), recent.identity("partner-a", path))
    assert refused.value.reason == NOT_OWN_UPLOAD


def test_another_file_at_the_name_is_refused(tmp_path: Path) -> None:
    """The name no longer holds the file the account published (the scanner took it and
    another writer put one there): that one is not the account's to rename."""
    recent = RecentUploads()
    path = tmp_path / "report.csv.tmp123"
    _published(path, recent)
    identity = recent.identity("partner-a", path)
    path.rename(tmp_path / "claimed")
    path.write_bytes(b"another writer's")
    with pytest.raises(Refused, match="'rename' permission"):
        require_own_upload(os.lstat(path), identity)


def test_a_directory_the_account_created_is_not_an_upload(tmp_path: Path) -> None:
    """mkdir remembers a directory too (for its times): renaming it would move files that
    may be waiting in it."""
    recent = RecentUploads()
    directory = tmp_path / "inbox"
    directory.mkdir()
    info = directory.stat()
    recent.remember("partner-a", directory, (info.st_dev, info.st_ino))
    with pytest.raises(Refused):
        require_own_upload(os.lstat(directory), recent.identity("partner-a", directory))
