"""What a client is shown of a file (server.shown_attrs) is what asyncssh's own code showed,
with the owner left out and a link's size 0; the ``ls -l`` line is asyncssh's to the character."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from asyncssh import SFTPAttrs, SFTPName, SFTPServer

from server.shown_attrs import longname, shown_attrs


def special_files(tmp_path: Path) -> list[Path]:
    (tmp_path / "file").write_bytes(b"12345")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("/etc/a-host-path")
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "sock"))
    return [tmp_path / name for name in ("file", "dir", "link", "fifo", "sock")]


def test_the_attributes_are_asyncssh_s_without_the_owner_and_with_no_link_length(tmp_path):
    for path in special_files(tmp_path):
        info = os.lstat(path)
        expected = SFTPAttrs.from_local(info)
        expected.uid = expected.gid = expected.owner = expected.group = None
        if path.name == "link":
            assert expected.size == len("/etc/a-host-path")
            expected.size = 0
        shown = shown_attrs(info)
        assert shown.owner is None and shown.uid is None
        for version in (3, 4, 5, 6):
            assert shown.encode(version) == expected.encode(version), (path.name, version)


class _Named(SFTPServer):
    """asyncssh's own ``format_longname``, with ssftp's names for the owner and the group."""

    def __init__(self) -> None:  # no channel: only the formatting is used
        pass

    def format_user(self, uid: int | None) -> str:
        return "partner-a"

    def format_group(self, gid: int | None) -> str:
        return "ssftp"


@pytest.mark.parametrize("age", [0, 60, 40 * 86400, 200 * 86400, 3 * 365 * 86400, -86400])
def test_the_ls_line_is_asyncssh_s_to_the_character(tmp_path, age):
    """Recent files show the time, older ones (and ones from the future) the year."""
    for path in special_files(tmp_path):
        when = time.time() - age
        os.utime(path, (when, when), follow_symlinks=False)
        attrs = shown_attrs(os.lstat(path))
        theirs = SFTPName(path.name.encode(), attrs=attrs)
        _Named().format_longname(theirs)
        assert longname(attrs, "partner-a", "ssftp", path.name.encode()) == theirs.longname


def test_a_name_without_mode_links_size_or_time_is_blanks_as_asyncssh_leaves_them():
    theirs = SFTPName(b"bare", attrs=SFTPAttrs())
    _Named().format_longname(theirs)
    assert longname(SFTPAttrs(), "partner-a", "ssftp", b"bare") == theirs.longname
