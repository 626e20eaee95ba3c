"""asyncssh's receive buffer fed a packet's worth at a time.

asyncssh appends what the socket brought (up to 256 KiB a read under uvloop) to one ``bytes``
buffer and takes each packet off its front by slicing, which copies the rest of the buffer:
twice per packet (its first block, then its remainder). Eight 32 KiB packets of an upload in
one read were copied some nine times over; py-spy put those two slices at a fifth of the
event loop's time in a 256 MiB upload. Fed at most :data:`CHUNK_BYTES` at a time, the buffer
holds about one packet, and each slice copies only that.

The transport calls the ``data_received`` it was given when its protocol was set (uvloop keeps
the bound method), so the protocol is set again once the connection's is wrapped.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.session import DataType

# A 32 KiB channel packet (the most OpenSSH's clients send) with its headers, padding and MAC.
CHUNK_BYTES = 34 << 10


def feed_in_packets(conn: asyncssh.SSHServerConnection) -> None:
    """Have ``conn`` take what it receives :data:`CHUNK_BYTES` at a time; from its
    ``connection_made``, once its transport is set."""
    state: Any = conn  # asyncssh's private state: its transport, None once closed
    receive = conn.data_received

    def data_received(data: bytes, datatype: DataType = None) -> None:
        if len(data) <= CHUNK_BYTES:
            receive(data)
            return
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_BYTES):
            if state._transport is None:  # closed by what came before: asyncssh stops there
                return
            receive(view[start:start + CHUNK_BYTES])  # type: ignore[arg-type]

    conn.data_received = data_received  # type: ignore[method-assign]
    state._transport.set_protocol(conn)
