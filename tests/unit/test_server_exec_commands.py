"""server.exec_commands: the exec commands parsed as a shell would (and the rest refused), and a
file read off the event loop by offset."""

from __future__ import annotations

import hashlib
import os

import pytest

from server.exec_commands import HashCommand, parse_command
from ssftp.errors import Refused

CONTENT = b"clean bytes for the consumer\n" * 100


# -- parsing, directly ---------------------------------------------------------------------


def test_parse_command_unquotes_as_a_shell():
    assert parse_command("md5sum /a\\ b/c.csv") == HashCommand("md5sum", "/a b/c.csv")
    assert parse_command("sha256sum 'x y'") == HashCommand("sha256sum", "x y")
    assert parse_command("sha1sum") == HashCommand("sha1sum", "-")
    assert parse_command("sha1sum -") == HashCommand("sha1sum", "-")


@pytest.mark.parametrize("command", [None, "", "md5sum x y", "md5 x", "md5sum -b x",
                                     "echo ${ShellId}%ComSpec%", 'md5sum "x'])
def test_parse_command_refuses_the_rest(command):
    with pytest.raises(Refused):
        parse_command(command)


def test_file_is_read_off_the_loop_by_offset(tmp_path):
    """The digest reads by offset, whatever the descriptor's position."""
    from server.exec_commands import digest_file

    path = tmp_path / "f"
    path.write_bytes(CONTENT)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 10, os.SEEK_SET)
        assert digest_file("sha256sum", fd) == (hashlib.sha256(CONTENT).hexdigest(),
                                                len(CONTENT))
    finally:
        os.close(fd)
