"""The SFTP listener's sockets, read for a PROXY protocol header before asyncssh sees a byte.

asyncssh.listen creates its listener through a ``tunnel``'s ``create_server`` when given one;
:class:`ProxyListener` is that tunnel, over an ordinary TCP listener. Each accepted connection
starts with :class:`_HeaderReader`: from an address of ``limits.trustedProxies`` (with
``limits.proxyProtocol``) it reads the header (server.proxy_protocol) and then hands the
connection to asyncssh with the header's client address as its peer; any other connection is
handed over at once, as itself. From then on asyncio's transport calls asyncssh's protocol
directly: the reader costs nothing once a connection is up.

A trusted proxy's connection without a whole valid header within :data:`HEADER_SECONDS` is
dropped, with one line (in summary per proxy and reason): a silent connection holds no slot for
longer, and the bytes read are bounded by the header's own bounds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from server.log_summary import LogSummary
from server.proxy_protocol import parse_header
from ssftp.addresses import Network, holds
from ssftp.errors import ProxyHeaderError
from ssftp.metrics import REFUSED_CONNECTIONS

HEADER_SECONDS = 5.0
_BACKLOG = 100  # asyncssh.listen's own


class _PeerTransport(asyncio.Transport):
    """A connection's transport as asyncssh sees it behind a proxy: the same socket, with the
    client the header named as its peer."""

    def __init__(self, transport: asyncio.Transport, peer: tuple[str, int]) -> None:
        super().__init__()
        self._transport = transport
        self._peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        return self._transport.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class _HeaderReader(asyncio.Protocol):
    def __init__(self, ssh_factory: Callable[[], asyncio.Protocol],
                 proxies: tuple[Network, ...], refusals: LogSummary) -> None:
        self._ssh_factory = ssh_factory
        self._proxies = proxies
        self._refusals = refusals
        self._received = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._proxy = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not an asyncio.Transport under uvloop (ssftp's loop in
        # every process it runs: server.event_loop), whose classes derive from none of them.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._proxy = str(peer[0]) if peer else "?"
        if not holds(self._proxies, self._proxy):
            self._hand_over(None)
            return
        self._timer = asyncio.get_running_loop().call_later(
            HEADER_SECONDS, self._drop, f"no PROXY protocol header within {HEADER_SECONDS:g} s")

    def data_received(self, data: bytes) -> None:
        self._received += data
        try:
            header = parse_header(self._received)
        except ProxyHeaderError as exc:
            self._drop(str(exc))
            return
        if header is not None:
            self._received = self._received[header.size:]
            self._hand_over(header.client)

    def eof_received(self) -> bool | None:
        """A connection closed with nothing sent is a balancer's TCP health check: closed
        without a line."""
        if self._received:
            self._drop("connection closed before a whole PROXY protocol header")
        elif self._transport is not None:
            self._transport.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _hand_over(self, client: tuple[str, int] | None) -> None:
        """asyncssh's connection from here on, with the bytes after the header."""
        if self._timer is not None:
            self._timer.cancel()
        assert self._transport is not None
        transport = self._transport
        ssh = self._ssh_factory()
        transport.set_protocol(ssh)
        ssh.connection_made(transport if client is None else _PeerTransport(transport, client))
        if self._received:
            ssh.data_received(self._received)

    def _drop(self, reason: str) -> None:
        assert self._transport is not None
        if self._transport.is_closing():
            return
        self._refusals.log(("proxyProtocol", self._proxy, reason), "connection refused",
                           logging.WARNING, ip=self._proxy, limit="proxyProtocol",
                           reason=reason)
        REFUSED_CONNECTIONS.labels(limit="proxyProtocol").inc()
        self._transport.abort()


class ProxyListener:
    """asyncssh.listen's ``tunnel``: a TCP listener whose connections from
    ``proxies()`` (asked at each connection, so a reload applies to the next) begin with a
    PROXY header."""

    def __init__(self, proxies: Callable[[], tuple[Network, ...]], refusals: LogSummary) -> None:
        self._proxies = proxies
        self._refusals = refusals

    async def create_server(self, session_factory: Callable[[str, int], Any],
                            listen_host: str, listen_port: int) -> asyncio.Server:
        """What asyncssh calls with its connection factory (whose arguments, a tunnel's
        original address, mean nothing here)."""
        def reader() -> _HeaderReader:
            return _HeaderReader(lambda: session_factory("", 0), self._proxies(),
                                 self._refusals)

        return await asyncio.get_running_loop().create_server(
            reader, listen_host, listen_port, flags=socket.AI_PASSIVE, backlog=_BACKLOG)
