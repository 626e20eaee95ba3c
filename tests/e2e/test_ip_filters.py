"""Who may connect (issue 27): ``limits.allowedIps``/``deniedIps`` before the key exchange, an
account's at its login, and the PROXY protocol through a real HAProxy (``send-proxy-v2`` and
``send-proxy``), so that the filters and the logs see the partner, not the balancer. Real
clients: asyncssh, paramiko; all of 127.0.0.0/8 is loopback on Linux, so a client binds its
source address to 127.0.0.2 or 127.0.0.3 (denied), and HAProxy connects from 127.0.0.4 (the
trusted proxy)."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import paramiko
import pytest

from testkit.openssh_server import free_port
from tests.support.config import PASSWORDS, gateway_config, write_config
from tests.support.gateway import ServerThread, beside
from tests.support.logs import log_entries, wait_for_log
from tests.support.metrics import sample
from tests.support.waiting import wait_for
from tests.support.worker import Ssftp

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
PROXY = "127.0.0.4"
PROXIED_PASSWORD = "proxied-Passw0rd"

FILTERED = """
    limits:
      deniedIps: ["127.0.0.3", "2001:db8::/32"]
      proxyProtocol: true
      trustedProxies: ["127.0.0.4"]
    """


def filtered_config(keys) -> str:
    """The standard accounts, partner-b allowed from 127.0.0.2 only, and FILTERED limits."""
    text = gateway_config(keys).replace(
        "          auth:\n            username: partner-b\n",
        "          allowedIps: [\"127.0.0.2\"]\n"
        "          auth:\n            username: partner-b\n")
    assert "allowedIps" in text
    return text + FILTERED


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory, keys, gateway) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("filtered")
    config = write_config(root / "ssftp.yaml", filtered_config(keys))
    with beside(ServerThread(config, root / "data"), gateway) as server:
        yield server


def connect(port: int, username: str, source: str) -> asyncssh.SSHClientConnection:
    return asyncssh.connect("127.0.0.1", port, username=username, password=PASSWORDS[username],
                            known_hosts=None, local_addr=(source, 0), login_timeout=30)


async def logs_in(port: int, username: str, source: str) -> int:
    """Log in and list the root; the client's source port."""
    async with connect(port, username, source) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == "/"
        return int(conn.get_extra_info("sockname")[1])


def logins(server: ServerThread, username: str) -> list[dict]:
    return [entry for entry in log_entries(server.layout.log)
            if entry.get("event") == "login" and entry.get("user") == username]


def refusals(server: ServerThread, limit: str) -> list[dict]:
    return [entry for entry in log_entries(server.layout.log)
            if entry.get("event") == "connection refused" and entry.get("limit") == limit]


def test_a_denied_address_is_refused_before_login_while_another_logs_in(filtered) -> None:
    """127.0.0.3 (limits.deniedIps) is disconnected with the reason before any login; 127.0.0.2
    (not a trusted proxy: served as itself) logs in meanwhile. One log line, counted."""
    before = sample("ssftp_refused_connections_total", limit="deniedIps")

    async def scenario() -> None:
        with pytest.raises(asyncssh.DisconnectError, match="address not allowed"):
            async with connect(filtered.port, "partner-a", "127.0.0.3"):
                pass
        await logs_in(filtered.port, "partner-a", "127.0.0.2")

    asyncio.run(scenario())
    refused = wait_for_log(filtered.layout.log,
                           lambda e: e.get("event") == "connection refused"
                           and e.get("ip") == "127.0.0.3", what="the refusal of 127.0.0.3")
    assert refused["limit"] == "deniedIps" and refused["reason"] == "address not allowed"
    assert sample("ssftp_refused_connections_total", limit="deniedIps") == before + 1
    assert not [e for e in logins(filtered, "partner-a") if e["ip"] == "127.0.0.3"]


def paramiko_login(port: int, username: str, source: str) -> None:
    """paramiko from ``source``: an SFTP listing, or paramiko's AuthenticationException."""
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    transport = paramiko.Transport(sock)
    try:
        transport.connect(username=username, password=PASSWORDS[username])
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None and sftp.listdir(".") is not None
    finally:
        transport.close()


def test_an_account_s_allowed_ips_fail_its_login_elsewhere_like_a_wrong_password(
        filtered) -> None:
    """partner-b (allowedIps: 127.0.0.2) with its right password from 127.0.0.1 fails as a
    wrong password does; the log says why; from 127.0.0.2 it logs in; other accounts are not
    filtered by it."""
    denied = sample("ssftp_logins_total", method="password", result="denied")
    with pytest.raises(paramiko.AuthenticationException):
        paramiko_login(filtered.port, "partner-b", "127.0.0.1")
    paramiko_login(filtered.port, "partner-b", "127.0.0.2")
    paramiko_login(filtered.port, "partner-a", "127.0.0.1")
    refused = [e for e in logins(filtered, "partner-b") if not e["ok"]]
    assert refused and {e["ip"] for e in refused} == {"127.0.0.1"}
    assert refused[-1]["reason"] == "address not allowed for account"
    assert {e["ip"] for e in logins(filtered, "partner-b") if e["ok"]} == {"127.0.0.2"}
    assert sample("ssftp_logins_total", method="password", result="denied") == \
        denied + 1


@pytest.fixture(scope="module")
def haproxy(filtered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """HAProxy in front of the filtered server: a frontend per PROXY protocol version, each
    port by the option its backend sends the header with."""
    if not Path(HAPROXY).exists():
        pytest.fail("haproxy is not installed (scripts/bootstrap.sh installs it)")
    ports = {"send-proxy-v2": free_port(), "send-proxy": free_port()}
    sections = "".join(f"""
frontend f{index}
    bind 127.0.0.1:{port}
    default_backend b{index}
backend b{index}
    server gateway 127.0.0.1:{filtered.port} {option} source {PROXY}
""" for index, (option, port) in enumerate(ports.items()))
    config = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    config.write_text(f"""global
    maxconn 64
defaults
    mode tcp
    timeout connect 10s
    timeout client 120s
    timeout server 120s
{sections}""")
    process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        for port in ports.values():
            wait_for(f"haproxy listening on {port}", lambda port=port: listening(port))
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=30)


def listening(port: int) -> bool:
    """Whether ``ss`` shows a listener on 127.0.0.1:``port`` (a probe connection would reach
    the server through the balancer)."""
    shown = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                           text=True, check=True).stdout
    return f"127.0.0.1:{port}" in shown


@pytest.mark.parametrize("option", ["send-proxy-v2", "send-proxy"])
def test_through_haproxy_the_logs_see_the_client_and_the_filters_apply(
        filtered, haproxy, option: str) -> None:
    """Through HAProxy (connecting from 127.0.0.4) the login is logged with the client's own
    address and source port, partner-b's allowedIps admits it from 127.0.0.2 (and refuses
    127.0.0.1), and 127.0.0.3 (deniedIps) is refused through the balancer."""
    port = haproxy[option]

    async def scenario() -> tuple[int, int]:
        # The reason may not get through: asyncssh aborts the refused connection, and a reset
        # reaching HAProxy can discard the disconnect message it had not yet forwarded
        # (ConnectionLost, a DisconnectError too). The log line below says why.
        with pytest.raises(asyncssh.DisconnectError):
            async with connect(port, "partner-a", "127.0.0.3"):
                pass
        with pytest.raises(asyncssh.PermissionDenied):
            await logs_in(port, "partner-b", "127.0.0.1")
        return await logs_in(port, "partner-a", "127.0.0.1"), \
            await logs_in(port, "partner-b", "127.0.0.2")

    partner_a, partner_b = asyncio.run(scenario())
    (login,) = [e for e in logins(filtered, "partner-a") if e.get("port") == partner_a]
    assert login["ok"] and login["ip"] == "127.0.0.1"
    (login,) = [e for e in logins(filtered, "partner-b") if e.get("port") == partner_b]
    assert login["ok"] and login["ip"] == "127.0.0.2"
    refused = wait_for_log(filtered.layout.log, lambda e: e.get("event") == "connection refused"
                           and e.get("ip") == "127.0.0.3", what="the refusal through the balancer")
    assert refused["limit"] == "deniedIps"
    assert not [e for e in logins(filtered, "partner-a") if e["ip"] == "127.0.0.3"]


def test_a_trusted_proxy_s_connection_without_a_header_is_dropped(filtered) -> None:
    """A connection from the trusted proxy that starts with SSH, not a PROXY header, is
    dropped before asyncssh sees it (no version line back), with one log line."""
    with socket.create_connection(("127.0.0.1", filtered.port), timeout=60,
                                  source_address=(PROXY, 0)) as sock:
        sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        assert sock.recv(100) == b""  # closed; asyncssh never sent its version
    refused = wait_for_log(filtered.layout.log,
                           lambda e: e.get("event") == "connection refused"
                           and e.get("limit") == "proxyProtocol",
                           what="the dropped header-less connection")
    assert refused["ip"] == PROXY
    assert re.search("neither v1 nor v2", refused["reason"])


def test_a_proxied_client_logs_in_to_a_real_serve_process(tmp_path: Path) -> None:
    """``ssftp serve`` runs on uvloop, whose transports are no asyncio.Transport: the listener
    asserted that one was, and every connection of a real server process was reset (the
    threads of the tests above run asyncio's own loop). A PROXY v1 header's client logs in
    under its own address, as the login line says."""
    port = free_port()
    config = write_config(tmp_path / "ssftp.yaml", f"""
    sftpPort: {port}
    limits:
      proxyProtocol: true
      trustedProxies: ["127.0.0.1/32"]
    users:
      stagingDir:
        - directory: proxied
          auth: {{username: proxied, password: {PROXIED_PASSWORD}}}
    """)
    server = Ssftp(tmp_path, config, tmp_path / "data", "", "serve")
    try:
        wait_for("the server to listen", lambda: bool(server.events("listening"))
                 or server.proc.poll() is not None)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 22\r\n")
            transport = paramiko.Transport(sock)
            try:
                transport.connect(username="proxied", password=PROXIED_PASSWORD)
                assert paramiko.SFTPClient.from_transport(transport) is not None
            finally:
                transport.close()
        wait_for("the login line", lambda: bool(server.events("login")))
    finally:
        assert server.stop() == 0, server.output()
    [login] = server.events("login")
    assert (login["ip"], login["port"], login["ok"]) == ("10.1.2.3", 5555, True)
