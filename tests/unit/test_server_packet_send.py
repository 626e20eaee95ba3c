"""The connection's logger (server.packet_send.level_first) logs what asyncssh's logs, and
turns nothing into text for a level nobody logs; a channel's own flush sends what asyncssh's
would, in the same order. Real transfers through both: tests/integration/test_packets.py."""

from __future__ import annotations

import logging

import pytest
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_CHANNEL_EOF
from asyncssh.logging import SSHLogger

from server.packet_send import _flush_send_buf, _Held, _keep_bytes_written, level_first


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


class Channel:
    """What server.packet_send's flush reads and calls of an asyncssh channel."""

    def __init__(self, window: int, packet_size: int, *chunks: bytes) -> None:
        self._send_buf = [(bytearray(chunk), None) for chunk in chunks]
        self._send_buf_len = sum(len(chunk) for chunk in chunks)
        self._send_window = window
        self._send_pktsize = packet_size
        self._send_chan = 7
        self._send_state = "open"
        self.sent: list[tuple[int, bytes]] = []

    def send_packet(self, pkttype: int, *args: bytes) -> None:
        self.sent.append((pkttype, b"".join(args)))

    def _pause_resume_writing(self) -> None:
        pass

    def _close_send(self) -> None:
        self.sent.append((-1, b"closed"))


def _data(channel: Channel) -> list[bytes]:
    """The data of the channel data packets sent, without their string length."""
    return [payload[4:] for pkttype, payload in channel.sent if pkttype == MSG_CHANNEL_DATA]


def test_a_flush_sends_what_the_window_allows_in_packets_and_keeps_the_rest_in_order() -> None:
    """asyncssh's own flush, sealed here from views of the buffer: the window and the packet
    size cut the packets, what the window does not allow stays, and the EOF waits for it."""
    channel = Channel(12, 4, b"a" * 10, b"b" * 5)
    _flush_send_buf(channel, None, _Held(), sealing=False)
    assert _data(channel) == [b"aaaa", b"aaaa", b"aa", b"bb"]
    assert [bytes(buf) for buf, _ in channel._send_buf] == [b"bbb"]
    assert (channel._send_buf_len, channel._send_window) == (3, 0)
    channel._send_state = "eof_pending"
    channel._send_window = 100
    _flush_send_buf(channel, None, _Held(), sealing=False)
    assert _data(channel)[4:] == [b"bbb"]
    assert channel.sent[-1] == (MSG_CHANNEL_EOF, b"")
    assert (channel._send_buf, channel._send_buf_len, channel._send_state) == ([], 0, "eof")


def test_bytes_written_are_kept_whole_and_sent_from_views_across_flushes() -> None:
    """``bytes`` written go into the buffer as they are (no copy), a flush the window cuts
    short leaves a view of the rest, and the next flush sends that rest, in order."""
    channel = Channel(6, 4)
    channel._encoding = None
    channel.write = lambda data, datatype=None: pytest.fail("asyncssh's write for bytes")
    channel._flush_send_buf = lambda: _flush_send_buf(channel, None, _Held(), sealing=False)
    _keep_bytes_written(channel)
    data = b"0123456789"
    channel.write(data)
    assert _data(channel) == [b"0123", b"45"]
    (rest, _), = channel._send_buf
    assert isinstance(rest, memoryview) and rest.obj is data
    assert channel._send_buf_len == 4
    channel._send_window = 100
    channel._flush_send_buf()
    assert _data(channel) == [b"0123", b"45", b"6789"]
    assert (channel._send_buf, channel._send_buf_len) == ([], 0)
