"""The connection's logger (server.packet_send.level_first) logs what asyncssh's logs, and
turns nothing into text for a level nobody logs."""

from __future__ import annotations

import logging

from asyncssh.logging import SSHLogger

from server.packet_send import level_first


class Counted:
    """An argument that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.texts = 0

    def __str__(self) -> str:
        self.texts += 1
        return "counted"


def test_a_debug_call_nobody_logs_turns_nothing_into_text() -> None:
    logger = level_first(SSHLogger(logging.getLogger("test.level_first.quiet"), context="conn=1"))
    logger.logger.setLevel(logging.INFO)
    argument = Counted()
    logger.debug1("Sending %s", [argument])  # a list: asyncssh joins its items as text
    child = logger.get_child("sftp", context="chan=0")  # as asyncssh makes a channel's
    child.debug1("Sending %s", [argument])
    assert argument.texts == 0


def test_what_is_logged_is_what_asyncssh_logs(caplog) -> None:
    parent = logging.getLogger("test.level_first.loud")
    theirs = SSHLogger(parent, context="conn=1").get_child("sftp", context="chan=0")
    ours = level_first(SSHLogger(parent, context="conn=1")).get_child("sftp", context="chan=0")
    with caplog.at_level(logging.DEBUG, logger=parent.name):
        for logger in (theirs, ours):
            logger.debug1("Received %s for %s", b"name\x01", ["a", b"b"])
            logger.info("Sent %s", ("127.0.0.1", 22))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4
    assert messages[:2] == messages[2:]
    assert caplog.records[0].name == caplog.records[2].name == "test.level_first.loud.sftp"
