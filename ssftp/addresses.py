"""Network addresses as ssftp.yaml and the command line write them, parsed in one place.

``HOST:PORT`` is read the same way for every listener and every clamd (``[::1]:9464`` for
IPv6), so the config schema can validate an address without importing the code that serves or
dials it. The ``allowedIps``/``deniedIps`` networks are read here too, and matched
(:class:`AddressFilter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

from ssftp.errors import InvalidValueError

Address = tuple[str, int]


def split_host_port(value: str) -> Address | None:
    """(host, port) of ``HOST:PORT`` or ``[HOST]:PORT``; None when it is not one."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def parse_listen(value: str) -> Address:
    """A listener's ``HOST:PORT``; InvalidValueError naming the value if it is not one."""
    address = split_host_port(value)
    if address is None:
        raise InvalidValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return address


def check_http_url(value: str) -> str:
    """``value`` if it is an http:// or https:// URL with a host (a webhook's), else
    InvalidValueError (a ValueError, so the config schema reports it at its key). The message
    never repeats the URL: a webhook's often carries a secret token."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or any(c.isspace() or not c.isprintable() for c in value)):
        raise InvalidValueError("must be an http:// or https:// URL with a host")
    return value


@dataclass(frozen=True)
class ClamdAddress:
    """``/path/clamd.sock`` (or ``unix:/path``) or ``tcp://host:port`` (or ``host:port``)."""

    unix_path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, value: str) -> ClamdAddress:
        if value.startswith("unix:"):
            return cls(unix_path=value.removeprefix("unix:"))
        if "/" in value and not value.startswith("tcp://"):
            # A socket path, absolute or relative (host:port never holds a slash).
            return cls(unix_path=value)
        address = split_host_port(value.removeprefix("tcp://"))
        if address is None:
            raise InvalidValueError("a clamd address is a socket path (/path, dir/name or "
                                    "unix:path) or host:port (or tcp://host:port)")
        return cls(host=address[0], port=address[1])

    def __str__(self) -> str:
        return self.unix_path if self.unix_path else f"tcp://{self.host}:{self.port}"



ICAP_PORT = 1344


@dataclass(frozen=True)
class IcapAddress:
    """One ICAP service, ``icap://host[:port]/service`` (RFC 3507; port 1344 by default)."""

    host: str
    port: int
    service: str
    # The URL in one canonical form: names the server in logs, verdicts and the up metric.
    url: str

    @classmethod
    def parse(cls, url: str) -> IcapAddress:
        """InvalidValueError naming the URL and what is wrong with it, in one line."""
        text = url.strip()
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise InvalidValueError(f"ICAP server {url!r}: not icap://host[:port]/service, "
                                    "with a port from 1 to 65535") from None
        if parts.scheme.lower() != "icap" or not text.lower().startswith("icap://"):
            raise InvalidValueError(f"ICAP server {url!r}: the URL must start with icap:// "
                                    "(e.g. icap://127.0.0.1:1344/avscan)")
        if parts.username is not None or parts.password is not None:
            raise InvalidValueError(f"ICAP server {url!r}: a user or password in the URL is "
                                    "not supported")
        host = parts.hostname
        if not host:
            raise InvalidValueError(f"ICAP server {url!r}: a host is required "
                                    "(icap://host/service)")
        if port is None and parts.netloc.endswith(":"):
            raise InvalidValueError(f"ICAP server {url!r}: the port after ':' is empty")
        port = ICAP_PORT if port is None else port
        if not 1 <= port <= 65535:
            raise InvalidValueError(f"ICAP server {url!r}: the port must be a number from 1 "
                                    "to 65535")
        if parts.fragment:
            raise InvalidValueError(f"ICAP server {url!r}: a '#' fragment has no meaning here")
        if not parts.path.strip("/"):
            raise InvalidValueError(f"ICAP server {url!r}: a service path is required "
                                    "(e.g. icap://host/avscan)")
        if any(c.isspace() for c in parts.path + parts.query):
            raise InvalidValueError(f"ICAP server {url!r}: the service path has white space")
        service = parts.path + (f"?{parts.query}" if parts.query else "")
        netloc = f"[{host}]" if ":" in host else host.lower()
        return cls(host, port, service, f"icap://{netloc}:{port}{service}")

    def __str__(self) -> str:
        return self.url


Network = IPv4Network | IPv6Network


def parse_network(value: str) -> Network:
    """A CIDR network (``10.0.0.0/8``, ``2001:db8::/32``) or one address (``192.0.2.7``, a
    /32 or /128); InvalidValueError naming the entry if it is neither."""
    try:
        return ip_network(value.strip(), strict=True)
    except ValueError as exc:
        hint = " (host bits set: write the network's first address)" if "host bits" in str(
            exc) else ""
        raise InvalidValueError(f"{value!r} is not an IP address or CIDR network (e.g. "
                                f"192.0.2.7, 10.0.0.0/8, 2001:db8::/32){hint}") from None


def _client_address(ip: str) -> IPv4Address | IPv6Address | None:
    """The address a peer name gives, an IPv4-mapped IPv6 one (a dual-stack listener's view of
    an IPv4 client) as the IPv4 address it is; None for no address (``?``)."""
    try:
        address = ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def holds(networks: tuple[Network, ...], ip: str) -> bool:
    """Whether one of ``networks`` holds the address ``ip`` (never one that cannot be read)."""
    address = _client_address(ip)
    return address is not None and any(address in network for network in networks)


@dataclass(frozen=True)
class AddressFilter:
    """``allowedIps`` and ``deniedIps``, SFTPGo's semantics: a denied address is refused even
    when an allowed network holds it too; with allowed networks, only their addresses pass;
    with neither, every address does."""

    allowed: tuple[Network, ...] = ()
    denied: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allowed: list[str], denied: list[str]) -> AddressFilter:
        return cls(tuple(map(parse_network, allowed)), tuple(map(parse_network, denied)))

    def refusal(self, ip: str) -> str | None:
        """Why ``ip`` is refused (``deniedIps``: it is in one; ``allowedIps``: it is in none of
        them), or None when it passes. An address that cannot be read (no peer name) passes
        no allowed list."""
        if not self.allowed and not self.denied:
            return None
        if holds(self.denied, ip):
            return "deniedIps"
        if self.allowed and not holds(self.allowed, ip):
            return "allowedIps"
        return None
