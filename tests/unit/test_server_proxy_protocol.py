"""The PROXY protocol header (server.proxy_protocol): v1 and v2 as HAProxy sends them, and every
way one can be wrong or unfinished."""

from __future__ import annotations

import struct

import pytest

from server.proxy_protocol import V2_SIGNATURE, ProxyHeader, parse_header
from ssftp.errors import ProxyHeaderError

SSH = b"SSH-2.0-OpenSSH_9.2\r\n"


def v2(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", command, family, len(addresses)) + addresses


def tcp4(source: bytes, port: int) -> bytes:
    return source + bytes([10, 0, 0, 1]) + struct.pack("!HH", port, 22)


def test_v1_tcp4_and_tcp6_give_the_client_and_the_header_size() -> None:
    line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 22\r\n"
    assert parse_header(line + SSH) == ProxyHeader(len(line), ("192.0.2.7", 51234))
    line6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 22\r\n"
    assert parse_header(line6) == ProxyHeader(len(line6), ("2001:db8::7", 65535))


def test_v2_tcp4_and_tcp6_give_the_client_and_skip_tlvs() -> None:
    header = v2(0x21, 0x11, tcp4(bytes([192, 0, 2, 7]), 51234) + b"\x03\x00\x04abcd")
    assert parse_header(header + SSH) == ProxyHeader(len(header), ("192.0.2.7", 51234))
    six = bytes.fromhex("20010db8" + "0" * 22 + "07") + bytes(16) + struct.pack("!HH", 4000, 22)
    assert parse_header(v2(0x21, 0x21, six)) == ProxyHeader(52, ("2001:db8::7", 4000))


def test_health_checks_keep_the_proxys_own_address() -> None:
    """v2 LOCAL (HAProxy's check-send-proxy), v1 UNKNOWN and a v2 family other than TCP."""
    assert parse_header(v2(0x20, 0x00, b"")) == ProxyHeader(16, None)
    assert parse_header(b"PROXY UNKNOWN\r\n") == ProxyHeader(15, None)
    assert parse_header(v2(0x21, 0x31, bytes(216))) == ProxyHeader(232, None)  # AF_UNIX


@pytest.mark.parametrize("data", [b"", b"PRO", b"PROXY TCP4 192.0.2.7", V2_SIGNATURE[:5],
                                  V2_SIGNATURE + b"\x21\x11\x00",
                                  v2(0x21, 0x11, tcp4(bytes(4), 1))[:-1]])
def test_a_header_not_yet_whole_asks_for_more(data: bytes) -> None:
    assert parse_header(data) is None


@pytest.mark.parametrize(("data", "reason"), [
    (SSH, "neither v1 nor v2"),
    (b"GET / HTTP/1.1\r\n", "neither v1 nor v2"),
    (b"PROXY TCP4 " + b"1" * 100, "longer than 107"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 51234\r\n", "not 'PROXY TCP4"),
    (b"PROXY UDP4 192.0.2.7 10.0.0.1 1 22\r\n", "not 'PROXY TCP4"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.1 1 22\r\n", "not TCP4 addresses"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 22\r\n", "ports"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 012 22\r\n", "ports"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "command byte 0x11"),
    (v2(0x21, 0x11, bytes(8)), "truncated"),
    (v2(0x21, 0x21, bytes(12)), "truncated"),
])
def test_a_malformed_header_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyHeaderError, match=reason):
        parse_header(data)
