"""server.in_flight's rules, without a server: when a connection's socket is paused and
resumed, when a READ waits for room, and that a connection below the floor never waits for
the others (the real server's figures are in tests/e2e/test_session_memory.py)."""

from __future__ import annotations

import asyncio

from server.in_flight import (
    FLOOR_BYTES,
    RECEIVED_BYTES,
    REPLY_BYTES,
    ChannelBytes,
    ConnectionBytes,
    ProcessBytes,
)

MIB = 1 << 20


class Reading:
    """Whether a connection's socket is read, as its pause and resume set it."""

    def __init__(self) -> None:
        self.on = True

    def connection(self, process: ProcessBytes) -> ConnectionBytes:
        def pause() -> None:
            assert self.on
            self.on = False

        def resume() -> None:
            assert not self.on
            self.on = True

        return ConnectionBytes(process, pause, resume)


def test_a_connection_beyond_its_share_of_received_bytes_is_not_read() -> None:
    process, reading = ProcessBytes(limit=1 << 30), Reading()
    first, second = (ChannelBytes(connection)
                     for connection in [reading.connection(process)] * 2)
    first.buffered(RECEIVED_BYTES // 2)
    second.buffered(RECEIVED_BYTES // 2)
    assert reading.on  # at its share, not beyond
    second.buffered(RECEIVED_BYTES // 2 + 1)
    assert not reading.on
    first.buffered(0)  # the session took what it held
    assert reading.on and process.held == RECEIVED_BYTES // 2 + 1
    second.close()
    first.close()
    assert process.held == 0


def test_beyond_the_process_limit_only_connections_above_the_floor_wait() -> None:
    process = ProcessBytes(limit=10 * MIB)
    big, small, other = Reading(), Reading(), Reading()
    hog = ChannelBytes(big.connection(process))
    modest = ChannelBytes(small.connection(process))
    late = ChannelBytes(other.connection(process))
    hog.buffered(12 * MIB)  # alone above the process's limit: paused
    assert not big.on
    modest.buffered(FLOOR_BYTES)  # at the floor: read whatever the others hold
    assert small.on
    late.buffered(FLOOR_BYTES + 1)
    assert not other.on
    hog.buffered(0)  # the hog's session caught up: room for the others again
    assert big.on and other.on


def test_a_read_waits_for_room_for_its_reply() -> None:
    async def scenario() -> None:
        process = ProcessBytes(limit=1 << 30)
        connection = Reading().connection(process)
        channels = [ChannelBytes(connection) for _ in range(3)]
        for channel in channels[:2]:
            await channel.reserve(REPLY_BYTES // 2)
        third = asyncio.ensure_future(channels[2].reserve(REPLY_BYTES // 2))
        await asyncio.sleep(0)
        assert not third.done()  # the connection's share is taken
        channels[0].shrink(REPLY_BYTES // 4)  # a short read gives part of it back
        await asyncio.sleep(0)
        assert not third.done()
        channels[1].sent()
        await asyncio.wait_for(third, 5)
        assert connection.replies == REPLY_BYTES // 4 + REPLY_BYTES // 2
        for channel in channels:
            channel.close()
        assert process.held == 0

    asyncio.run(scenario())


def test_a_reply_up_to_the_floor_never_waits_for_other_connections() -> None:
    async def scenario() -> None:
        process = ProcessBytes(limit=16 * MIB)
        holders = [ChannelBytes(Reading().connection(process)) for _ in range(4)]
        for holder in holders:
            await holder.reserve(FLOOR_BYTES)  # the process's limit is reached
        newcomer = ChannelBytes(Reading().connection(process))
        await asyncio.wait_for(newcomer.reserve(FLOOR_BYTES), 5)
        more = asyncio.ensure_future(newcomer.reserve(1))  # beyond its floor: waits
        await asyncio.sleep(0)
        assert not more.done()
        holders[0].close()
        holders[1].close()
        await asyncio.wait_for(more, 5)

    asyncio.run(scenario())


def test_a_closed_channel_counts_nothing_more() -> None:
    async def scenario() -> None:
        process = ProcessBytes(limit=1 << 30)
        channel = ChannelBytes(Reading().connection(process))
        channel.buffered(MIB)
        channel.close()
        channel.buffered(2 * MIB)  # asyncssh's read finishing after the channel's end
        await channel.reserve(MIB)  # a READ finishing after it
        assert process.held == 0

    asyncio.run(scenario())
