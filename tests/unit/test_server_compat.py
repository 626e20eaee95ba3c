"""server.compat: the refusal notices real clients show on stderr, rate-limited and printable;
the replies of a turn of the loop written as one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from asyncssh.channel import SSHServerChannel
from asyncssh.logging import logger as asyncssh_logger
from asyncssh.packet import String, UInt32
from asyncssh.sftp import SFTPServer

from server.compat import REPLY_GATHER_BYTES, CompatSFTPHandler, RefusalNotices

FXP_STATUS, FXP_DATA = 101, 103


def test_refusal_notices_are_rate_limited() -> None:
    """A client looping on a refusal gets a burst of reasons, then one per interval."""
    clock = [1000.0]
    lines: list[bytes] = []
    notices = RefusalNotices(lines.append, burst=3, interval=10.0, clock=lambda: clock[0])
    for _ in range(50):
        notices.show("open", "/x", "no")
    assert len(lines) == 3
    clock[0] += 10.0
    for _ in range(50):
        notices.show("open", "/x", "no")
    assert len(lines) == 4
    assert lines[0] == b"ssftp: open /x refused: no\n"


def test_refusal_notices_keep_control_characters_out_of_the_terminal() -> None:
    """C0, DEL and C1 (0x9b is CSI on some terminals: on main it went through as it was) are
    shown escaped, and a name that is not UTF-8 too (on main it raised UnicodeEncodeError)."""
    lines: list[bytes] = []
    odd = b"\xff".decode("utf-8", "surrogateescape")
    RefusalNotices(lines.append).show("open", f"/a\x1b[2Jb\nc\x7f\x9bd{odd}", "no")
    assert lines == [b"ssftp: open /a\\x1b[2Jb\\nc\\x7f\\x9bd\\xff refused: no\n"]


# -- replies written together (a fake channel: what is written to it, and when) ---------------


class _Channel(SSHServerChannel[bytes]):
    """Only what the handler asks of its channel (asyncssh's own __init__ is not run)."""

    def __init__(self) -> None:
        self.closing = False
        self.status: int | None = None

    def is_closing(self) -> bool:
        return self.closing

    def exit(self, status: int) -> None:
        self.status = status


class _Writer:
    def __init__(self) -> None:
        self.channel = _Channel()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.channel.closing = True


class _Reader:
    logger = asyncssh_logger


class _Server:
    def exit(self) -> None:
        return None


def _handler(buffered: Callable[[], int] = lambda: 0) -> tuple[CompatSFTPHandler, _Writer]:
    writer = _Writer()
    handler = CompatSFTPHandler(cast(SFTPServer, _Server()), cast(Any, _Reader()),
                                cast(Any, writer), 3, buffered)
    return handler, writer


def _status(pktid: int) -> bytes:
    payload = bytes([FXP_STATUS]) + UInt32(pktid) + UInt32(0) + String("") + String("")
    return UInt32(len(payload)) + payload


async def test_the_replies_of_one_turn_of_the_loop_are_written_as_one() -> None:
    handler, writer = _handler()
    for pktid in range(3):
        handler.send_packet(FXP_STATUS, pktid, UInt32(pktid), UInt32(0), String(""),
                            String(""))
    assert writer.writes == []
    await asyncio.sleep(0)
    assert writer.writes == [_status(0) + _status(1) + _status(2)]


async def test_replies_are_written_before_the_session_waits_for_its_client() -> None:
    """Nothing received is waiting: the reply goes now, not at the end of the turn."""
    handler, writer = _handler(buffered=lambda: 0)
    handler.send_packet(FXP_STATUS, 7, UInt32(7), UInt32(0), String(""), String(""))
    waiting = asyncio.ensure_future(handler.recv_packet())
    await asyncio.sleep(0)
    assert writer.writes == [_status(7)]
    waiting.cancel()


async def test_replies_past_the_limit_are_written_at_once() -> None:
    handler, writer = _handler()
    data = b"d" * (REPLY_GATHER_BYTES // 2)
    handler.send_packet(FXP_DATA, 1, UInt32(1), String(data))
    assert writer.writes == []
    handler.send_packet(FXP_DATA, 2, UInt32(2), String(data))
    assert len(writer.writes) == 1 and len(writer.writes[0]) > REPLY_GATHER_BYTES


async def test_replies_are_written_before_the_exit_status() -> None:
    handler, writer = _handler()
    handler.send_packet(FXP_STATUS, 3, UInt32(3), UInt32(0), String(""), String(""))
    await handler._cleanup(None)
    assert writer.writes == [_status(3)] and writer.channel.status == 0
