"""ssftp.addresses: the one parser of ``HOST:PORT`` (listeners) and of clamd addresses (a socket
path or ``host:port``), of ICAP URLs, of allowedIps/deniedIps and their matching, the check of
webhook URLs, and what each refuses."""

from __future__ import annotations

import pytest

from ssftp.addresses import (
    AddressFilter,
    ClamdAddress,
    IcapAddress,
    check_http_url,
    parse_listen,
    parse_network,
)
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


# --- ICAP URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "host", "port", "service", "canonical"), [
    ("icap://scanner.example/avscan", "scanner.example", 1344, "/avscan",
     "icap://scanner.example:1344/avscan"),
    ("icap://10.0.0.5:11344/srv_clamav", "10.0.0.5", 11344, "/srv_clamav",
     "icap://10.0.0.5:11344/srv_clamav"),
    ("ICAP://[::1]:1345/virus_scan?allow204=on", "::1", 1345, "/virus_scan?allow204=on",
     "icap://[::1]:1345/virus_scan?allow204=on"),
    ("icap://[::1]/avscan", "::1", 1344, "/avscan", "icap://[::1]:1344/avscan"),
    ("icap://Scanner.Example:65535/a/b", "scanner.example", 65535, "/a/b",
     "icap://scanner.example:65535/a/b"),
])
def test_a_good_url_is_parsed(url, host, port, service, canonical):
    server = IcapAddress.parse(url)
    assert (server.host, server.port, server.service, server.url) == (host, port, service,
                                                                      canonical)


@pytest.mark.parametrize(("url", "complaint"), [
    ("http://scanner/avscan", "must start with icap://"),
    ("scanner:1344/avscan", "must start with icap://"),
    ("icap:/scanner/avscan", "must start with icap://"),
    ("icap:///avscan", "a host is required"),
    ("icap://:1344/avscan", "a host is required"),
    ("icap://scanner:0/avscan", "from 1 to 65535"),
    ("icap://scanner:65536/avscan", "from 1 to 65535"),
    ("icap://scanner:port/avscan", "from 1 to 65535"),
    ("icap://scanner:/avscan", "port after ':' is empty"),
    ("icap://scanner", "a service path is required"),
    ("icap://scanner:1344/", "a service path is required"),
    ("icap://user:pw@scanner/avscan", "user or password"),
    ("icap://[::1/avscan", "ICAP server"),
])
def test_a_bad_url_is_refused_saying_what_is_wrong(url, complaint):
    with pytest.raises(ValueError, match="ICAP server") as raised:
        IcapAddress.parse(url)
    message = str(raised.value)
    assert complaint in message
    assert "\n" not in message


# --- webhook URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?token=abc", "http://127.0.0.1:9/",
                                 "https://[::1]:8443/hook"])
def test_check_http_url_takes_an_http_url_with_a_host(url):
    assert check_http_url(url) == url


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/token-123", "https:///token-123",
                                 "https://hooks.example.com/a b?token-123",
                                 "https://hooks.example.com:99999/token-123",
                                 "https://hooks.example.com/\x07token-123", "token-123"])
def test_check_http_url_refuses_without_repeating_the_url(url):
    """A webhook's URL often holds a secret token: the message never shows it."""
    with pytest.raises(InvalidValueError) as refused:
        check_http_url(url)
    assert str(refused.value) == "must be an http:// or https:// URL with a host"


def test_denied_wins_over_allowed_and_an_allowed_list_admits_only_its_addresses() -> None:
    rules = AddressFilter.of(["10.0.0.0/8", "2001:db8::/32"], ["10.9.0.0/16", "10.1.2.3"])
    assert rules.refusal("10.1.1.1") is None
    assert rules.refusal("2001:db8::5") is None
    assert rules.refusal("10.9.8.7") == "deniedIps"
    assert rules.refusal("10.1.2.3") == "deniedIps"
    assert rules.refusal("192.0.2.1") == "allowedIps"
    assert rules.refusal("2001:db9::1") == "allowedIps"
    assert rules.refusal("?") == "allowedIps"  # no peer name passes no allowed list


def test_a_deny_list_alone_admits_the_rest_and_no_lists_admit_all() -> None:
    rules = AddressFilter.of([], ["127.0.0.2"])
    assert rules.refusal("127.0.0.2") == "deniedIps"
    assert rules.refusal("127.0.0.1") is None and rules.refusal("?") is None
    assert AddressFilter().refusal("192.0.2.1") is None


def test_a_dual_stack_listener_s_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    assert AddressFilter.of([], ["192.0.2.0/24"]).refusal("::ffff:192.0.2.9") == "deniedIps"


@pytest.mark.parametrize(("value", "hint"), [("10.0.0.1/8", "host bits set"),
                                             ("not-an-ip", "e.g. 192.0.2.7"),
                                             ("10.0.0.0/33", "CIDR"), ("", "CIDR")])
def test_a_bad_network_is_named_in_one_line(value: str, hint: str) -> None:
    with pytest.raises(InvalidValueError, match=hint) as caught:
        parse_network(value)
    assert repr(value) in str(caught.value) and "\n" not in str(caught.value)
