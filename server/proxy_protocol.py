"""The PROXY protocol header a load balancer puts before the client's bytes (HAProxy's
``send-proxy``: version 1, one text line; ``send-proxy-v2``: version 2, binary), read into the
client's address. Pure: bytes in, an address or an error out; server.app's listener feeds it
what a trusted proxy's connection sends before any byte reaches asyncssh.

Bounded as the specification bounds it: a v1 line is at most 107 bytes with its CRLF, a v2
header 16 bytes plus the length its header gives (at most 65 535). What is neither is refused
as soon as its first bytes show it (an SSH client speaking directly: ``SSH-2.0-...``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ssftp.errors import ProxyHeaderError

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest line, "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16  # signature, version and command, family and protocol, length
_V2_LOCAL, _V2_PROXY = 0x20, 0x21
_V2_TCP4, _V2_TCP6 = 0x11, 0x21  # AF_INET or AF_INET6 over STREAM
_V2_ADDRESS_BYTES = {_V2_TCP4: 12, _V2_TCP6: 36}


@dataclass(frozen=True)
class ProxyHeader:
    """A whole header: ``size`` bytes long; ``client`` the address and port it carries, None
    for a proxy speaking for itself (v1 ``UNKNOWN``, the v2 LOCAL command of health checks,
    a family other than TCP over IPv4 or IPv6), whose connection keeps its own address."""

    size: int
    client: tuple[str, int] | None


def parse_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``, or None while ``data`` is the beginning of one
    (read more); ProxyHeaderError when it cannot be one."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data[:len(V2_SIGNATURE)]) or V1_PREFIX.startswith(data):
        return None
    raise ProxyHeaderError("no PROXY protocol header (neither v1 nor v2 signature)")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX} bytes")
        return None
    fields = data[:end].decode("ascii", "replace").split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(end + 2, None)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("PROXY v1 line is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    family = IPv4Address if fields[1] == "TCP4" else IPv6Address
    try:
        source, _destination = family(fields[2]), family(fields[3])
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1 addresses are not {fields[1]} addresses") from None
    ports = fields[4:6]
    if not all(port.isdigit() and (port == "0" or not port.startswith("0"))
               and int(port) < 65536 for port in ports):
        raise ProxyHeaderError("PROXY v1 ports are not numbers from 0 to 65535")
    return ProxyHeader(end + 2, (str(source), int(ports[0])))


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < _V2_FIXED:
        return None
    command, family, length = struct.unpack_from("!BBH", data, len(V2_SIGNATURE))
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"PROXY v2 version and command byte {command:#04x} unknown")
    size = _V2_FIXED + length
    if len(data) < size:
        return None
    if command == _V2_LOCAL or family not in _V2_ADDRESS_BYTES:
        return ProxyHeader(size, None)
    if length < _V2_ADDRESS_BYTES[family]:
        raise ProxyHeaderError(f"PROXY v2 addresses truncated ({length} bytes)")
    if family == _V2_TCP4:
        source: IPv4Address | IPv6Address = IPv4Address(data[16:20])
        port = struct.unpack_from("!H", data, 24)[0]
    else:
        source = IPv6Address(data[16:32])
        port = struct.unpack_from("!H", data, 48)[0]
    return ProxyHeader(size, (str(source), port))
