"""What the server does per SSH packet it sends, cut down to what the packet needs.

asyncssh's own path, per packet, made the server's downloads cost more CPU than OpenSSH's
(2.6 s per GiB against 1.9); measured with asyncssh alone (its ``SFTPServer``, no ssftp) it is
no cheaper. Six things it does are not needed here:

- An empty SSH_MSG_IGNORE ahead of every packet once the connection is encrypted: the
  countermeasure RFC 4251 (9.3.1) gives for CBC, whose next packet's IV an eavesdropper knows
  (the last block sent). The server offers no CBC (server.algorithms), and OpenSSH sends no
  such IGNORE. It doubled the packets, encryptions and socket writes of every reply.
- A log call per packet sent and received (the connection's, the channel's, the SFTP
  handler's), which names and measures the packet before asyncssh finds that its debug level
  (below 3, as ssftp leaves it) logs nothing. Left out while that level is below 3 when the
  connection is made.
- The arguments of every debug log call (the connection's, the SFTP handler's: several per
  request) turned into text before asyncssh's logger asks whether anything logs at that level
  (:func:`level_first`).
- The channel's data copied again for each part added on the way to the socket (the channel
  header, the packet type, the padding, the MAC; under AES-GCM the sealed text twice more).
  Here a channel data packet is joined once, sealed by the connection's cipher (AES-GCM
  directly: its length, then the sealed text that ends with the tag, as the wire has them)
  and written in its parts. Only on a connection at rest: during a key exchange, when one is
  due, or with compression, asyncssh sends the packet as before; the sequence number, the IV
  and the bytes towards the next rekey move exactly as asyncssh moves them.
- A socket write per packet. The packets a channel sends from its buffer in one go (when the
  session writes, when the client opens the window) are held and written together, in one
  system call; a packet asyncssh sends itself goes after those held, as their sequence
  numbers say it must.
- Three copies of the data on its way through the channel's buffer (into a bytearray of its
  own as it is written, a slice of that per packet, then the SSH string made of it): here
  the buffer keeps the ``bytes`` written, and a packet is sealed from a view of it
  (:func:`_flush_send_buf`).

asyncssh has no option for any of this; its private state is read and kept in step here,
which its pinned version makes safe, and tests/integration/test_packets.py proves with
real transfers under every cipher the server offers, across rekeys.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.constants import (
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EOF,
    MSG_CHANNEL_EXTENDED_DATA,
    MSG_IGNORE,
)
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from asyncssh.packet import Byte, SSHPacketLogger, String, UInt32
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# An SSH string of no bytes, what asyncssh's IGNORE carries.
_EMPTY_STRING = bytes(4)
# The debug level at which asyncssh logs packets.
_PACKET_LOG_LEVEL = 3


def packet_logging_on() -> bool:
    """Whether asyncssh logs packets now (``asyncssh.set_debug_level(3)``)."""
    return getattr(SSHLogger, "_debug_level", _PACKET_LOG_LEVEL) >= _PACKET_LOG_LEVEL


def unlogged(*args: object, **kwargs: object) -> None:
    """What a packet log call is made while packets are not logged."""


class _LevelFirst(SSHLogger):
    """asyncssh's logger, which asks for the level before anything else; its children (a
    channel's, the SFTP handler's) are too."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            super().log(level, msg, *args, **kwargs)


def level_first(logger: SSHLogger) -> SSHLogger:
    """A logger that logs what ``logger`` logs, and turns a call's arguments into text only
    when it logs the call. asyncssh's did that first, at every level: in a sshfs ``cat`` of
    64 MiB, a twentieth of the event loop's time went to debug calls nothing logged."""
    return _LevelFirst(logger._logger, context=logger._context)


class _Held:
    """The sealed packets of one connection held for one socket write, while ``depth`` (the
    channel flushes under way) is above zero."""

    __slots__ = ("depth", "parts")

    def __init__(self) -> None:
        self.depth = 0
        self.parts: list[bytes] = []

    def write(self, conn: Any, parts: tuple[bytes, ...]) -> None:
        if self.depth:
            self.parts.extend(parts)
        else:
            _write(conn, parts)

    def write_out(self, conn: Any) -> None:
        if self.parts:
            parts, self.parts = self.parts, []
            _write(conn, parts)


def _write(conn: Any, parts: tuple[bytes, ...] | list[bytes]) -> None:
    transport = conn._transport
    if transport is not None:
        with contextlib.suppress(ConnectionError):  # as asyncssh's: the loss is told apart
            transport.writelines(parts)


def trim_connection(conn: asyncssh.SSHServerConnection) -> None:
    """Have ``conn`` send its packets as the module says: its ``send_packet`` is wrapped
    (asyncssh sends the IGNORE and every packet by calling it on itself)."""
    send = conn.send_packet
    logged = packet_logging_on()
    held = _Held()
    state: Any = conn
    state._ssftp_held = held  # for its channels (trim_channel)

    def send_packet(pkttype: int, *args: bytes,
                    handler: SSHPacketLogger | None = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY_STRING,):
            return
        if pkttype == MSG_CHANNEL_DATA and not logged and _sent_sealed(conn, args, held):
            return
        held.write_out(conn)  # asyncssh writes its packet to the socket at once
        send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet  # type: ignore[method-assign]
    conn._logger = level_first(conn.logger)
    if not logged:
        conn.log_sent_packet = conn.log_received_packet = unlogged  # type: ignore[method-assign]


def trim_channel(chan: SSHChannel[Any]) -> None:
    """Have ``chan`` hand its packets to the connection unjoined (the connection joins them
    once) and write each flush of its buffer in one go (the connection's :class:`_Held`);
    while packets are not logged, keep the ``bytes`` written, seal its packets from views of
    them, and log no packets."""
    conn: Any = chan.get_connection()

    def send_packet(pkttype: int, *args: bytes) -> None:
        recipient = chan._send_chan  # None once the channel is closed
        if recipient is not None:
            conn.send_packet(pkttype, UInt32(recipient), *args, handler=chan)

    chan.send_packet = send_packet  # type: ignore[method-assign]
    held: _Held = conn._ssftp_held  # its connection is trimmed first (trim_connection)
    logged = packet_logging_on()

    def flush_send_buf() -> None:
        held.depth += 1
        try:
            _flush_send_buf(chan, conn, held, sealing=not logged)
        finally:
            held.depth -= 1
            if not held.depth:
                held.write_out(conn)

    chan._flush_send_buf = flush_send_buf  # type: ignore[method-assign]
    if not logged:
        _keep_bytes_written(chan)
        chan.log_sent_packet = chan.log_received_packet = unlogged  # type: ignore[method-assign]


def _keep_bytes_written(chan: Any) -> None:
    """Have the channel keep ``bytes`` written to it as they are, not in a bytearray copy:
    they cannot change, and :func:`_flush_send_buf` takes the rest of a buffer it has begun
    as a view. Anything else (another type, extended data, a channel that encodes or is not
    open), or while asyncssh's debug level is 2 or more (its ``write`` logs each write),
    goes to asyncssh's ``write``."""
    write = chan.write

    def keeping_write(data: Any, datatype: int | None = None) -> None:
        if (type(data) is bytes and data and datatype is None and chan._send_state == "open"
                and not chan._encoding and SSHLogger._debug_level < 2):
            chan._send_buf.append((data, None))
            chan._send_buf_len += len(data)
            chan._flush_send_buf()
        else:
            write(data, datatype)

    chan.write = keeping_write


def _flush_send_buf(chan: Any, conn: Any, held: _Held, *, sealing: bool) -> None:
    """asyncssh's ``SSHChannel._flush_send_buf``: as much of the channel's buffer as its send
    window allows, in packets of at most the client's packet size; then writing is paused or
    resumed, and a pending EOF or close is sent once the buffer is empty. A data packet is
    sealed from a view of the buffer (the consumed head is cut off once, after its packets:
    a bytearray of asyncssh's is cut, ``bytes`` kept whole are replaced by a view of the rest);
    asyncssh's way (a copy of the slice, handed to its ``send_packet``) is kept for extended
    data, and for whatever :func:`_sent_sealed` leaves to asyncssh."""
    while chan._send_buf and chan._send_window:
        buf, datatype = chan._send_buf[0]
        sent = 0
        with memoryview(buf) as view:
            while sent < len(buf) and chan._send_window:
                size = min(chan._send_window, chan._send_pktsize, len(buf) - sent)
                data = view[sent:sent + size]
                sent += size
                chan._send_buf_len -= size
                chan._send_window -= size
                recipient = chan._send_chan  # None once the channel is closed
                if not (sealing and datatype is None and recipient is not None and _sent_sealed(
                        conn, (UInt32(recipient), UInt32(size), data), held)):
                    _send_copied(chan, datatype, bytes(data))
                data.release()
        if chan._send_buf and chan._send_buf[0][0] is buf:  # not dropped meanwhile (a close)
            if sent == len(buf):
                del chan._send_buf[0]
            elif isinstance(buf, bytearray):
                del buf[:sent]
            else:
                chan._send_buf[0] = (memoryview(buf)[sent:], datatype)
    chan._pause_resume_writing()
    if not chan._send_buf:
        if chan._send_state == "eof_pending":
            chan.send_packet(MSG_CHANNEL_EOF)
            chan._send_state = "eof"
        elif chan._send_state == "close_pending":
            chan._close_send()


def _send_copied(chan: Any, datatype: int | None, data: bytes) -> None:
    if datatype is None:
        chan.send_packet(MSG_CHANNEL_DATA, String(data))
    else:
        chan.send_packet(MSG_CHANNEL_EXTENDED_DATA, UInt32(datatype), String(data))


def _sent_sealed(conn: Any, args: tuple[bytes | memoryview, ...], held: _Held) -> bool:
    """Send one channel data packet as asyncssh's ``send_packet`` would, and say so; False
    (nothing sent) where asyncssh must send it: compressed, in or due for a key exchange, or
    before the login is complete."""
    encryption = conn._send_encryption
    if (encryption is None or conn._compressor is not None
            or not conn._kex_complete or not conn._auth_complete
            or conn._rekey_bytes_sent >= conn._rekey_bytes
            or (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)):
        return False
    length = 1 + sum(len(arg) for arg in args)
    padding = -(conn._send_enchdrlen + length) % conn._send_blocksize
    if padding < 4:
        padding += conn._send_blocksize
    packet = b"".join((Byte(padding), Byte(MSG_CHANNEL_DATA), *args, os.urandom(padding)))
    header = UInt32(len(packet))
    if type(encryption) is GCMEncryption:  # the length, then the sealed text with its tag
        cipher: GCMCipher = encryption._cipher
        parts = (header, AESGCM(cipher._key).encrypt(cipher._iv, packet, header))
        cipher._update_iv()
    else:
        parts = encryption.encrypt_packet(conn._send_seq, header, packet)
    held.write(conn, parts)
    conn._send_seq = (conn._send_seq + 1) & 0xFFFFFFFF
    conn._rekey_bytes_sent += len(packet)
    return True
