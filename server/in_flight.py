"""The bytes clients make the server hold in memory, bounded per connection and for the process.

Two kinds, each counted on the connection it belongs to and in one total for the process:

- **Received**: what arrived on a connection's channels and their sessions have not taken yet
  (SFTP requests, WRITE data waiting for the disk, a hash command's standard input). Above the
  connection's share the connection's socket is no longer read (the transport's
  ``pause_reading``): the client's data waits in TCP, on its side, whatever its channels'
  windows say. That is the one bound that holds: asyncssh sends a channel's window adjust
  when data is *delivered* to the session, not when the session consumes it, and its own
  pause of a channel keeps the data in a buffer of the channel, out of the window's count,
  which the next delivery tops up again (of 512 MiB fed to ``sha256sum -``, 450 MiB waited in
  that buffer at once; 2 GiB fed took RSS to 2 GiB). So the sessions here never pause their
  channel (server.ssh_server) and everything received is counted here.
- **Replies**: READ replies read from disk and not yet sent. A READ waits for room before it
  reads (:meth:`ChannelBytes.reserve`); the room is given back once the channel's write
  buffer has drained, before its next request is read. A client that reads no reply holds
  one reply per channel, and its connection's share at most.

A connection's share is :data:`RECEIVED_BYTES` and :data:`REPLY_BYTES`. Above
:data:`FLOOR_BYTES` it also needs room in the process's total (``limits.maxBufferedBytes``);
up to the floor it never waits for the others, so that connections holding their share (a
client that reads no reply) cannot stop everyone else's transfers, only slow them down to the
floor.

Everything here runs on the event loop: no lock. The hooks are called per SSH packet received
and per READ, so each is a few additions and comparisons.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncssh.sftp import MAX_SFTP_READ_LEN

# A connection's share of received bytes: one channel window's worth (limits.channelWindowBytes'
# default), what a single upload needs buffered to keep a fast link busy while the disk catches
# up; the connection's channels share it.
RECEIVED_BYTES = 16 << 20
# A connection's share of replies: two of the largest (each channel holds one at most, until
# it is sent). The 20 channels of two connections reading 4 MiB and reading no reply took
# RSS 52-57 MiB above idle with it, 76-85 with 16 MiB (the copies asyncssh makes of a reply,
# the allocator's arenas of the sessions' threads).
REPLY_BYTES = 8 << 20
# The largest READ reply asyncssh advertises (limits@openssh.com) and serves, and about the
# largest request it accepts (a 4 MiB WRITE): one of them always fits.
FLOOR_BYTES = MAX_SFTP_READ_LEN


@dataclass
class ProcessBytes:
    """Bytes held by all connections of the process, received and replies together."""

    limit: int
    held: int = 0
    # Woken when bytes are given back: the READs waiting for room, the connections paused.
    _waiting: set[asyncio.Future[None]] = field(default_factory=set)
    _paused: set[ConnectionBytes] = field(default_factory=set)

    def has_room(self, held: int, more: int, share: int) -> bool:
        """Whether a connection holding ``held`` bytes of a kind (its ``share`` of which) may
        hold ``more`` of it."""
        after = held + more
        return after <= share and (
            after <= FLOOR_BYTES or self.held + more <= self.limit)

    async def wait(self) -> None:
        """Until bytes are given back somewhere."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.add(waiter)
        try:
            await waiter
        finally:
            self._waiting.discard(waiter)

    def paused(self, connection: ConnectionBytes, paused: bool) -> None:
        if paused:
            self._paused.add(connection)
        else:
            self._paused.discard(connection)

    def give_back(self, count: int) -> None:
        self.held -= count
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        for connection in list(self._paused):
            connection.settle()


@dataclass(eq=False)
class ConnectionBytes:
    """One connection's bytes: received (reading its socket is paused above its share) and
    replies (a READ waits for room)."""

    process: ProcessBytes
    pause: Callable[[], None]
    resume: Callable[[], None]
    received: int = 0
    replies: int = 0
    _paused: bool = False

    def add_received(self, count: int) -> None:
        self.received += count
        if count < 0:
            self.process.give_back(-count)
        else:
            self.process.held += count
        self.settle()

    def settle(self) -> None:
        """Pause or resume reading the connection's socket, as its received bytes say."""
        over = not self.process.has_room(self.received, 0, RECEIVED_BYTES)
        if over != self._paused:
            self._paused = over
            self.process.paused(self, over)
            (self.pause if over else self.resume)()

    async def reserve_reply(self, count: int) -> None:
        while not self.process.has_room(self.replies, count, REPLY_BYTES):
            await self.process.wait()
        self.replies += count
        self.process.held += count

    def release_reply(self, count: int) -> None:
        self.replies -= count
        self.process.give_back(count)


class ChannelBytes:
    """What one channel holds of its connection's bytes. Once closed it holds nothing: a read
    or a READ that asyncssh finishes after the channel's end counts nothing more."""

    def __init__(self, connection: ConnectionBytes) -> None:
        self._connection = connection
        self._received = 0
        self._reply = 0
        self._closed = False

    def buffered(self, count: int) -> None:
        """The channel's session now holds ``count`` bytes received and not taken."""
        if count != self._received and not self._closed:
            self._connection.add_received(count - self._received)
            self._received = count

    async def reserve(self, count: int) -> None:
        """Wait for room for a reply of up to ``count`` bytes, held until :meth:`sent`."""
        await self._connection.reserve_reply(count)
        if self._closed:
            self._connection.release_reply(count)
        else:
            self._reply += count

    def shrink(self, count: int) -> None:
        """The reply reserved turned out to be ``count`` bytes (a short read, the file's end)."""
        if count < self._reply:
            self._connection.release_reply(self._reply - count)
            self._reply = count

    def sent(self) -> None:
        """The channel's write buffer has drained: its reply no longer counts."""
        if self._reply:
            self._connection.release_reply(self._reply)
            self._reply = 0

    def close(self) -> None:
        self.buffered(0)
        self.sent()
        self._closed = True
