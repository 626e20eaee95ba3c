"""server.handles: a session's handles within its own limit and the process's budget, the
uploads it sees by path, the read-ahead of downloads and the transfer log, without an SSH
client. The same limits through real clients: test_limits, test_refusal_floods."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from server import handles as handles_module
from server.descriptors import DescriptorBudget
from server.handles import (
    HEAD_BYTES,
    READ_AHEAD_LIMIT,
    DownloadHandle,
    Handle,
    Handles,
    ReadAhead,
    UploadHandle,
)
from ssftp.config.schema import LimitsSettings
from testkit.uploads import begin_upload, room_for, upload_context

Logged = list[tuple[str, str, int, dict[str, Any]]]


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Logged:
    """The events the handles log: (logger, event, level, fields)."""
    events: Logged = []
    monkeypatch.setattr(handles_module, "log_event", lambda logger, event, level, **fields:
                        events.append((logger.name, event, level, fields)))
    return events


def handles(limit: int = 3, budget: DescriptorBudget | None = None) -> Handles:
    settings = LimitsSettings.model_validate({"maxOpenHandles": limit})
    return Handles("partner-a", "192.0.2.7", lambda: settings, budget or room_for(100))


async def download(book: Handles, virtual: str = "/file") -> DownloadHandle:
    async def opening() -> DownloadHandle:
        return DownloadHandle(virtual, -1)
    return await book.open(virtual.encode(), opening)


async def entries() -> AsyncIterator[bytes]:
    """A listing, as OPENDIR hands asyncssh one: not started until its first READDIR."""
    yield b"."


# -- limits --------------------------------------------------------------------------------


async def test_a_session_opens_no_more_than_max_open_handles() -> None:
    budget = room_for(100)
    book = handles(limit=3, budget=budget)
    first, _ = await download(book), await download(book)
    listing = entries()
    book.add_listing(b"/", listing)
    with pytest.raises(asyncssh.SFTPFailure, match=r"^too many open handles \(3\)$"):
        await download(book)
    with pytest.raises(asyncssh.SFTPFailure, match="too many open handles"):
        book.add_listing(b"/", entries())
    book.close(first)
    await download(book)  # a closed file gives its slot back
    del listing
    gc.collect()
    await download(book)  # and so does a listing asyncssh let go of
    assert [budget.take_handle() for _ in range(98)] == [True] * 97 + [False]


async def test_the_process_budget_bounds_all_sessions_together() -> None:
    budget = room_for(3)
    one, other = handles(limit=10, budget=budget), handles(limit=10, budget=budget)
    opened = [await download(one), await download(other), await download(one)]
    with pytest.raises(asyncssh.SFTPFailure, match=r"^server is busy: too many open handles "
                                                   r"in all sessions \(3\); try again later$"):
        await download(other)
    one.close(opened[0])
    await download(other)


async def test_an_open_that_fails_holds_no_slot_and_one_refused_never_runs() -> None:
    budget = room_for(100)
    book = handles(limit=1, budget=budget)
    ran: list[str] = []

    async def failing() -> DownloadHandle:
        ran.append("failing")
        raise FileNotFoundError("no such file")

    async def refused() -> DownloadHandle:
        ran.append("refused")
        return DownloadHandle("/never", -1)

    with pytest.raises(FileNotFoundError):
        await book.open(b"/missing", failing)
    await download(book)  # the failure's slot is free again
    with pytest.raises(asyncssh.SFTPFailure):
        await book.open(b"/never", refused)
    assert ran == ["failing"]
    assert [budget.take_handle() for _ in range(100)] == [True] * 99 + [False]


async def test_each_limit_is_logged_once_per_session(logged: Logged) -> None:
    """A client at its limit may retry in a loop: one line, not one per refusal."""
    book = handles(limit=1, budget=room_for(1))
    await download(book)
    for _ in range(5):
        with pytest.raises(asyncssh.SFTPFailure):
            await download(book)
    other = handles(limit=5, budget=room_for(0))
    for _ in range(2):
        with pytest.raises(asyncssh.SFTPFailure):
            await download(other)
    assert [(event, level, fields["limit"], fields["value"], fields["user"], fields["path"])
            for _logger, event, level, fields in logged] == [
        ("limit reached", logging.WARNING, "maxOpenHandles", 1, "partner-a", "/file"),
        ("limit reached", logging.WARNING, "processHandles", 0, "partner-a", "/file")]


# -- the session's own uploads -------------------------------------------------------------


async def test_an_upload_is_found_by_its_path_while_open_and_the_latest_wins(
        tmp_path: Path) -> None:
    book = handles(limit=10)
    with upload_context() as context:

        async def upload() -> UploadHandle:
            return UploadHandle("/up.bin", begin_upload(context, tmp_path, "/up.bin"))

        first = await book.open(b"/up.bin", upload)
        assert book.upload_at("/up.bin") is first
        second = await book.open(b"/up.bin", upload)
        assert book.upload_at("/up.bin") is second
        book.close(first)  # an older handle's close leaves the newer one in place
        assert book.upload_at("/up.bin") is second
        book.close(second)
        assert book.upload_at("/up.bin") is None
        assert book.upload_at("/other") is None
        for handle in (first, second):
            handle.upload.writer.abort()


# -- read-ahead ----------------------------------------------------------------------------


def test_a_download_read_in_order_is_read_ahead_and_served_from_the_block() -> None:
    ahead, handle = ReadAhead(), DownloadHandle("/big", -1)
    content = bytes(range(256)) * 64  # 16 KiB
    assert ahead.length(handle, 0, 1024) == 8 * 1024  # the first read reads ahead
    assert ahead.keep(handle, 0, 1024, content[:8192], 8192) == content[:1024]
    for offset in range(1024, 8192, 1024):
        assert ahead.take(handle, offset, 1024) == content[offset:offset + 1024]
    assert ahead.take(handle, 8192, 1024) is None  # beyond the block: read it
    assert ahead.take(handle, 7168, 2048) is None  # partly beyond: read it all
    assert ahead.length(handle, 8192, 1024) == 8 * 1024  # still in order
    assert ahead.length(handle, 1 << 20, 1024) == 1024  # a jump reads what it asks for
    assert ahead.length(handle, 0, 1 << 20) == READ_AHEAD_LIMIT  # at most this much
    assert ahead.length(handle, 0, 4 << 20) == 4 << 20  # and never less than asked


def test_the_block_is_the_handle_s_own_and_goes_with_it() -> None:
    ahead = ReadAhead()
    handle, other = DownloadHandle("/a", -1), DownloadHandle("/b", -1)
    ahead.keep(handle, 0, 4, b"abcdefgh", 8)
    assert ahead.take(other, 4, 4) is None
    assert ahead.length(other, 4, 4) == 4
    ahead.forget(other)
    assert ahead.take(handle, 4, 4) == b"efgh"
    ahead.forget(handle)
    assert ahead.take(handle, 4, 4) is None


def test_a_block_with_nothing_beyond_the_request_is_not_kept() -> None:
    ahead, handle = ReadAhead(), DownloadHandle("/small", -1)
    ahead.keep(handle, 0, 4, b"abcdefgh", 8)
    assert ahead.keep(handle, 100, 4, b"more", 4) == b"more"
    assert ahead.take(handle, 4, 4) is None
    assert ahead.length(handle, 4, 4) == 4  # no longer in order with anything


def test_a_block_that_reached_the_end_of_the_file_answers_up_to_it_and_beyond() -> None:
    """Short and empty answers from the block, as the reads would give: a small file's
    reads need no trip off the loop."""
    ahead, handle = ReadAhead(), DownloadHandle("/small", -1)
    assert ahead.keep(handle, 0, 4, b"abcdef", 4096) == b"abcd"
    assert ahead.take(handle, 4, 4096) == b"ef"
    assert ahead.take(handle, 6, 4096) == b""  # the end of the file
    assert ahead.take(handle, 1 << 20, 10) == b""
    assert ahead.take(handle, 0, 4) is None  # before the block: read it
    assert ahead.keep(handle, 0, 6, b"abcdef", 4096) == b"abcdef"  # all taken, end kept
    assert ahead.take(handle, 6, 10) == b""


def test_the_head_read_with_the_open_answers_the_first_reads() -> None:
    ahead = ReadAhead()
    small = DownloadHandle("/small", -1, head=b"tiny file")
    ahead.begin(small)
    assert small.head == b""  # the block is the read-ahead's now
    assert ahead.take(small, 0, 32768) == b"tiny file"
    assert ahead.take(small, 9, 32768) == b""
    big = DownloadHandle("/big", -1, head=b"x" * HEAD_BYTES)
    ahead.begin(big)
    assert ahead.take(big, 0, 1024) == b"x" * 1024
    assert ahead.take(big, HEAD_BYTES - 10, 1024) is None  # more may follow: read it


async def test_closing_a_download_forgets_its_block() -> None:
    book = handles()
    handle = await download(book)
    book.ahead.keep(handle, 0, 2, b"abcd", 4)
    book.close(handle)
    assert book.ahead.take(handle, 2, 2) is None


# -- the transfer log ----------------------------------------------------------------------


async def test_a_transfer_is_logged_after_the_close_returns(logged: Logged) -> None:
    book = handles()
    handle: Handle = await download(book, "/report.csv")
    handle.bytes = 42
    book.log_transfer(handle, "failed somehow")
    assert logged == []  # not before the reply is on its way
    await asyncio.sleep(0)
    [(logger, event, level, fields)] = logged
    assert (logger, event, level) == ("ssftp.transfer", "transfer", logging.WARNING)
    assert {key: fields[key] for key in ("direction", "user", "ip", "path", "bytes", "ok",
                                         "error")} == {
        "direction": "download", "user": "partner-a", "ip": "192.0.2.7",
        "path": "/report.csv", "bytes": 42, "ok": False, "error": "failed somehow"}
