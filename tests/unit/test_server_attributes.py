"""server.attributes: what SETSTAT and FSETSTAT may change on what, as plain functions (and
their application to a file of a temp directory). The same through real clients: test_mtimes,
test_setstat_settles, test_permissions_e2e."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from asyncssh import SFTPAttrs

from server.attributes import Whose, apply, apply_at, left_alone, mode, require_allowed
from ssftp.errors import Refused
from ssftp.permissions import Permission, Permissions

NONE = Permissions(frozenset())
ALL = Permissions(frozenset(Permission))
MTIME = 1_600_000_000


@pytest.mark.parametrize("whose", list(Whose))
@pytest.mark.parametrize("attrs", [SFTPAttrs(uid=0), SFTPAttrs(gid=0),
                                   SFTPAttrs(uid=0, gid=0, mtime=MTIME)])
def test_the_owner_never_changes(whose: Whose, attrs: SFTPAttrs) -> None:
    with pytest.raises(Refused, match="owner is never allowed"):
        require_allowed(attrs, whose, ALL)


def test_only_an_upload_in_progress_changes_its_size() -> None:
    require_allowed(SFTPAttrs(size=0), Whose.OWN_UPLOAD, NONE)
    for whose in (Whose.RECENT_UPLOAD, Whose.OTHER):
        with pytest.raises(Refused, match="size in place is not allowed; upload it again"):
            require_allowed(SFTPAttrs(size=0), whose, ALL)


@pytest.mark.parametrize(("attrs", "needs"), [
    (SFTPAttrs(permissions=0o644), "changing permissions needs the 'chmod' permission"),
    (SFTPAttrs(mtime=MTIME), "changing times needs the 'chtimes' permission"),
    (SFTPAttrs(atime=MTIME), "changing times needs the 'chtimes' permission"),
])
def test_mode_and_times_need_their_permission_except_on_the_account_s_upload(
        attrs: SFTPAttrs, needs: str) -> None:
    for whose in (Whose.OWN_UPLOAD, Whose.RECENT_UPLOAD):
        require_allowed(attrs, whose, NONE)
    with pytest.raises(Refused, match=f"^{needs}$"):
        require_allowed(attrs, Whose.OTHER, NONE)
    require_allowed(attrs, Whose.OTHER, Permissions(frozenset({Permission.CHMOD,
                                                               Permission.CHTIMES})))


def test_one_attribute_refused_refuses_the_whole_request() -> None:
    both = SFTPAttrs(permissions=0o644, mtime=MTIME)
    for granted in (Permission.CHMOD, Permission.CHTIMES):
        with pytest.raises(Refused):
            require_allowed(both, Whose.OTHER, Permissions(frozenset({granted})))


def test_a_directory_s_mode_alone_is_left_alone_without_chmod() -> None:
    """OpenSSH's put -r sets every uploaded directory's mode, and prints each refusal."""
    assert left_alone(SFTPAttrs(permissions=0o755), NONE, directory=True)
    assert not left_alone(SFTPAttrs(permissions=0o755), ALL, directory=True)
    assert not left_alone(SFTPAttrs(permissions=0o755), NONE, directory=False)
    assert not left_alone(SFTPAttrs(permissions=0o755, mtime=MTIME), NONE, directory=True)
    assert not left_alone(SFTPAttrs(permissions=0o755, uid=0), NONE, directory=True)
    assert not left_alone(SFTPAttrs(mtime=MTIME), NONE, directory=True)


def test_a_client_sets_permission_bits_only() -> None:
    assert mode(0o100644) == 0o644
    assert mode(0o7777) == 0o775  # no set-id, no sticky bit, no write for others
    assert mode(0o002) == 0


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "up.bin"
    path.write_bytes(b"x")
    os.chmod(path, 0o600)
    os.utime(path, (1000, 2000))
    return path


def test_apply_sets_mode_and_times_by_path_or_descriptor(file: Path) -> None:
    apply(file, SFTPAttrs(permissions=0o4755, mtime=MTIME))
    info = file.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_atime, info.st_mtime) == (0o755, MTIME, MTIME)
    fd = os.open(file, os.O_RDONLY)
    try:
        apply(fd, SFTPAttrs(atime=5, mtime=MTIME + 1))
    finally:
        os.close(fd)
    assert (file.stat().st_atime, file.stat().st_mtime) == (5, MTIME + 1)


def test_an_access_time_alone_changes_nothing(file: Path) -> None:
    apply(file, SFTPAttrs(atime=MTIME))
    assert (file.stat().st_atime, file.stat().st_mtime) == (1000, 2000)


def test_apply_at_changes_the_name_and_never_follows_a_link(file: Path) -> None:
    directory = os.open(file.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        apply_at(directory, file.name, SFTPAttrs(permissions=0o640, mtime=MTIME))
        assert (stat.S_IMODE(file.stat().st_mode), file.stat().st_mtime) == (0o640, MTIME)
        (file.parent / "link").symlink_to(file)
        with pytest.raises(OSError) as refused:
            apply_at(directory, "link", SFTPAttrs(permissions=0o666))
        assert refused.value.errno == errno.EOPNOTSUPP
        apply_at(directory, "link", SFTPAttrs(mtime=MTIME + 7))
    finally:
        os.close(directory)
    assert (stat.S_IMODE(file.stat().st_mode), file.stat().st_mtime) == (0o640, MTIME)
