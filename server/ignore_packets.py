"""No SSH_MSG_IGNORE before every packet the server sends.

asyncssh sends an empty SSH_MSG_IGNORE ahead of every packet once the connection is encrypted:
the countermeasure RFC 4251 (9.3.1) gives for CBC, whose next packet's IV an eavesdropper
knows (the last block sent) and could otherwise use to test a guess at the plaintext. With the
ciphers this server offers (server.algorithms: CTR, GCM, ChaCha20-Poly1305, never CBC) no IV
is predictable that way, and the IGNORE protects nothing; OpenSSH does not send it.

It costs on every reply: a second packet to pad, encrypt and send (a second ``send`` on the
socket, uvloop writes at once) and for the client to receive, decrypt and drop. On the SFTP
small-file session that is one extra packet for each of OPEN, WRITE and CLOSE.
"""

from __future__ import annotations

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import SSHPacketLogger


def skip_ignore_packets(conn: asyncssh.SSHServerConnection) -> None:
    """Have ``conn`` send its packets without asyncssh's IGNORE before each.

    The instance's ``send_packet`` is wrapped: asyncssh sends the IGNORE by calling it on
    itself, and no public option turns it off (asyncssh is pinned). Only the empty IGNORE
    asyncssh makes is dropped; nothing else sends one.
    """
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes,
                    handler: SSHPacketLogger | None = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY_STRING,):
            return
        send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet  # type: ignore[method-assign]


# An SSH string of no bytes, what asyncssh's IGNORE carries.
_EMPTY_STRING = bytes(4)
