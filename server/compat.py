"""What asyncssh's SFTP server does differently from OpenSSH's, changed for the clients that
depend on OpenSSH's way; the one place ssftp reaches into asyncssh's SFTP protocol code
(asyncssh is pinned: a new version must be checked against this module).

- **Trailing bytes.** OpenSSH's sftp-server discards whatever follows the fields of a request,
  whatever its type (``process()``: "discard the remaining bytes from the current packet");
  asyncssh answers SSH_FX_BAD_MESSAGE. rclone 1.60 (its pkg/sftp, the Debian build) sends
  WRITE packets whose length covers its whole 32 KiB buffer while the data string holds the
  bytes it read: every file over 32 KiB failed. Every request is read the OpenSSH way, so
  another client with the same habit in another request works too; only the declared fields
  are used, and nothing is logged per packet.
- **Exit status.** asyncssh closes the channel without an ``exit-status``; OpenSSH's scp (9.x
  speaks SFTP) and ``ssh -s sftp`` scripts take the missing status as a failure (scp exits 1
  after every copy). A session the client ended (EOF) exits 0, one ended on an error 1, as
  OpenSSH's sftp-server does.
- **users-groups-by-id@openssh.com.** OpenSSH's sftp asks it for ``ls -l`` and prints numeric
  ids without it; asyncssh does not offer it. It is answered with the session's
  ``format_user``/``format_group`` (the account name and "ssftp": no host account is named).
- **Replies written together.** asyncssh writes each reply to the channel at once, and the
  channel sends what it is given as SSH packets of at most the client's packet size: a 32 KiB
  READ reply (32 KiB and its 13-byte header) went as two packets, each WRITE's status as one,
  each packet padded, encrypted and sent by a system call of its own. OpenSSH's sftp-server
  writes into one buffer its channel drains in whole packets. Here the replies of one turn of
  the loop (the requests a burst brought, read from memory) are written as one, at the end of
  the turn, or before the session waits for its next request, or at
  :data:`REPLY_GATHER_BYTES`; their parts (header, id, data) are joined once, there.

:class:`RefusalNotices` is the other half of what clients show: OpenSSH's sftp, psftp, rclone
and curl print a status code's text ("Permission denied"), never the server's message, while
ssh and PuTTY print what the server writes on the channel's stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

from asyncssh.channel import SSHServerChannel
from asyncssh.constants import FXP_EXTENDED_REPLY
from asyncssh.packet import Byte, SSHPacket, String, UInt32
from asyncssh.sftp import SFTPHandler, SFTPNoConnection, SFTPServer, SFTPServerHandler
from asyncssh.stream import SSHReader, SSHWriter

from server.packet_send import packet_logging_on, unlogged
from ssftp.logs import one_line

USERS_GROUPS_BY_ID = b"users-groups-by-id@openssh.com"

# At most this many refusal lines on a session's stderr at once, then one per interval: a
# client looping on a refusal must not flood its user's terminal (nor the channel).
NOTICE_BURST = 10
NOTICE_INTERVAL_SECONDS = 1.0
# Replies gathered before they are written at once: eight 32 KiB READ replies. They are held
# beyond the channel's count of replies (server.in_flight) until written, so this is small.
REPLY_GATHER_BYTES = 256 << 10


class _LenientPacket(SSHPacket):
    """A request whose bytes after its fields are ignored (see the module docstring)."""

    def check_end(self) -> None:
        return None


class _ExitStatus(SFTPHandler):
    """Sends the exit status once asyncssh's server has settled its handles, just before it
    closes the channel (placed between SFTPServerHandler and SFTPHandler in the MRO)."""

    async def _cleanup(self, exc: Exception | None) -> None:
        if self._writer is not None:
            channel = self._writer.channel
            assert isinstance(channel, SSHServerChannel)
            channel.exit(0 if exc is None else 1)
        await super()._cleanup(exc)


class _IdNames:
    """The reply to users-groups-by-id@openssh.com: one name per id asked, in order."""

    def __init__(self, users: Sequence[str], groups: Sequence[str]) -> None:
        self.users, self.groups = users, groups

    def encode(self, sftp_version: int) -> bytes:
        def names(values: Sequence[str]) -> bytes:
            return String(b"".join(String(value) for value in values))
        return names(self.users) + names(self.groups)

    def __str__(self) -> str:  # asyncssh's debug log of what it sends
        return f"users {list(self.users)}, groups {list(self.groups)}"


def _ids(data: bytes) -> list[int]:
    packet = SSHPacket(data)
    ids = []
    while packet:
        ids.append(packet.get_uint32())
    return ids


async def _process_users_groups_by_id(handler: SFTPServerHandler,
                                      packet: SSHPacket) -> _IdNames:
    uids, gids = _ids(packet.get_string()), _ids(packet.get_string())
    server = handler._server
    return _IdNames([server.format_user(uid) for uid in uids],
                    [server.format_group(gid) for gid in gids])


_Handler = Callable[[SFTPServerHandler, SSHPacket], Awaitable[object]]


class CompatSFTPHandler(SFTPServerHandler, _ExitStatus):
    """asyncssh's SFTP server session, the OpenSSH way (see the module docstring)."""

    # Class attributes in asyncssh, declared there as instance ones (hence the noqa).
    _extensions: list[tuple[bytes, bytes]] = [  # noqa: RUF012
        *SFTPServerHandler._extensions, (USERS_GROUPS_BY_ID, b"1")]
    _packet_handlers: dict[int | bytes, _Handler | None] = {  # noqa: RUF012
        **SFTPServerHandler._packet_handlers,
        USERS_GROUPS_BY_ID: _process_users_groups_by_id,
    }
    _return_types: dict[object, int] = {  # noqa: RUF012
        **SFTPServerHandler._return_types, USERS_GROUPS_BY_ID: FXP_EXTENDED_REPLY}

    def __init__(self, server: SFTPServer, reader: SSHReader[bytes], writer: SSHWriter[bytes],
                 sftp_version: int, buffered: Callable[[], int]) -> None:
        super().__init__(server, reader, writer, sftp_version)
        self._buffered = buffered  # the bytes received on the channel and not yet read
        self._reply_parts: list[bytes] = []  # the replies of this turn, in their parts
        self._reply_bytes = 0
        self._logs_packets = packet_logging_on()  # see server.packet_send
        if not self._logs_packets:
            self.log_received_packet = unlogged  # type: ignore[method-assign]

    async def recv_packet(self) -> SSHPacket:
        if not self._buffered():  # the session waits for its client: nothing more comes now
            self._write_replies()
        packet = await super().recv_packet()
        return _LenientPacket(packet.get_remaining_payload())

    def send_packet(self, pkttype: int, pktid: int | None, *args: bytes) -> None:
        """asyncssh's, gathering the reply with the others of this turn of the loop."""
        if not self._writer:
            raise SFTPNoConnection("Connection not open")
        if self._writer.channel.is_closing():
            return
        length = 1 + sum(len(arg) for arg in args)
        first = not self._reply_parts
        self._reply_parts += (UInt32(length), Byte(pkttype), *args)
        self._reply_bytes += 4 + length
        if self._logs_packets:
            self.log_sent_packet(pkttype, pktid, b"".join((Byte(pkttype), *args)))
        if self._reply_bytes >= REPLY_GATHER_BYTES:
            self._write_replies()
        elif first:
            asyncio.get_running_loop().call_soon(self._write_replies)

    def _write_replies(self) -> None:
        if not self._reply_parts:
            return
        parts, self._reply_parts, self._reply_bytes = self._reply_parts, [], 0
        if self._writer is not None and not self._writer.channel.is_closing():
            self._writer.write(b"".join(parts))

    async def _cleanup(self, exc: Exception | None) -> None:
        self._write_replies()  # before the exit status and the channel's close
        await super()._cleanup(exc)


async def run_sftp_server(server: SFTPServer, reader: SSHReader[bytes],
                          writer: SSHWriter[bytes], sftp_version: int,
                          buffered: Callable[[], int]) -> None:
    """What asyncssh's own ``run_sftp_server`` does, with :class:`CompatSFTPHandler`;
    ``buffered`` is what the channel has received and the session not yet read."""
    reader.logger.info("Starting SFTP server")
    await CompatSFTPHandler(server, reader, writer, sftp_version, buffered).run()


class RefusalNotices:
    """The reason of each refusal, as a line for the session's stderr (``write``), at most
    ``burst`` at once and then one per ``interval`` seconds (a token bucket): the lines
    beyond are dropped, the SFTP status message still carries every reason."""

    def __init__(self, write: Callable[[bytes], None], *, burst: int = NOTICE_BURST,
                 interval: float = NOTICE_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write, self._burst, self._interval, self._clock = write, burst, interval, clock
        self._tokens = float(burst)
        self._last = clock()

    def show(self, operation: str, path: str, reason: str) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) / self._interval)
        self._last = now
        if self._tokens < 1:
            return
        self._tokens -= 1
        # Control characters (an escape sequence in a path) never reach the user's terminal.
        self._write(f"ssftp: {one_line(operation)} {one_line(path)} refused: "
                    f"{one_line(reason)}\n".encode())


def stderr_notices(channel: SSHServerChannel[bytes]) -> Callable[[str, str, str], None]:
    """``RefusalNotices.show`` for ``channel``'s stderr, callable from a session's thread
    (where refusals happen, server.off_loop): the line is written on the event loop. Only for
    the ``sftp`` subsystem: an exec command (server.exec_commands) reports its own errors."""
    if channel.get_subsystem() != "sftp":
        return lambda operation, path, reason: None
    loop = asyncio.get_running_loop()

    def write(line: bytes) -> None:
        if not channel.is_closing():
            channel.write_stderr(line)

    notices = RefusalNotices(write)

    def show(operation: str, path: str, reason: str) -> None:
        # The loop is closed if the server stopped while this session's call hung.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(notices.show, operation, path, reason)

    return show
