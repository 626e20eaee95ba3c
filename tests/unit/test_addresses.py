"""ssftp.addresses: the one parser of ``HOST:PORT`` (listeners) and of clamd addresses (a socket
path or ``host:port``), and what each refuses."""

from __future__ import annotations

import pytest

from ssftp.addresses import ClamdAddress, parse_listen
from ssftp.errors import InvalidValueError


def test_addresses():
    assert ClamdAddress.parse("/run/clamd.sock").unix_path == "/run/clamd.sock"
    assert ClamdAddress.parse("unix:/run/c.sock").unix_path == "/run/c.sock"
    tcp = ClamdAddress.parse("tcp://127.0.0.1:3310")
    assert (tcp.host, tcp.port) == ("127.0.0.1", 3310)
    assert ClamdAddress.parse("clamav:3310").host == "clamav"
    for bad in ("clamav", "tcp://h:99999", "tcp://:3310"):
        with pytest.raises(ValueError, match="a clamd address is a socket path"):
            ClamdAddress.parse(bad)


# --- HOST:PORT, the config key and the flag ---------------------------------------------------


@pytest.mark.parametrize(("text", "address"), [("127.0.0.1:9464", ("127.0.0.1", 9464)),
                                               ("[::1]:9464", ("::1", 9464)),
                                               ("localhost:1", ("localhost", 1))])
def test_parse_listen_takes_host_and_port(text, address):
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["9464", "127.0.0.1", "127.0.0.1:", ":9464", "h:0",
                                  "h:65536", "h:http", "h:-1"])
def test_parse_listen_refuses_what_is_not_host_and_port(text):
    with pytest.raises(InvalidValueError, match="is not HOST:PORT"):
        parse_listen(text)
