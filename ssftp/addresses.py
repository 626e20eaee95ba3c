"""Network addresses as ssftp.yaml and the command line write them, parsed in one place.

``HOST:PORT`` is read the same way for every listener and every clamd (``[::1]:9464`` for
IPv6), so the config schema can validate an address without importing the code that serves or
dials it.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """``icap://host[:port]/service``, an ICAP server's scanning service (RFC 3507; the
    port defaults to 1344)."""

    host: str
    port: int
    service: str

    @classmethod
    def parse(cls, value: str) -> IcapAddress:
        rest = value.removeprefix("icap://")
        if rest == value:
            raise InvalidValueError(f"{value!r} is not an ICAP URL: it must start with icap:// "
                                    "(e.g. icap://127.0.0.1:1344/avscan)")
        authority, slash, service = rest.partition("/")
        if not slash or not service or any(c.isspace() for c in service):
            raise InvalidValueError(f"{value!r} names no ICAP service: add its path "
                                    "(e.g. icap://127.0.0.1:1344/avscan)")
        if authority.endswith("]") or ":" not in authority:  # no port given
            authority = f"{authority}:{ICAP_PORT}"
        address = split_host_port(authority)
        if address is None or any(c in address[0] for c in "@?#[] "):
            raise InvalidValueError(f"{value!r} has no valid host[:port] (port 1-65535)")
        return cls(host=address[0], port=address[1], service="/" + service)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"icap://{host}:{self.port}{self.service}"
