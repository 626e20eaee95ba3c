"""One account cannot exhaust the server (issue 12, item 4): the limits per session, connection,
account and address, the process's descriptor budget, refusals logged in summary and limits on
reload, with the real server and real clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from server.app import Service, start_service
from ssftp.config.reload import ConfigStore
from ssftp.config.schema import LimitsSettings
from ssftp.layout import DataLayout
from ssftp.metrics import REGISTRY
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from testkit.ssftp_process import SsftpProcess, child_env, ssftp_command, wait_for_banner
from tests.support.config import PASSWORDS, gateway_config, write_config
from tests.support.gateway import ServerThread, beside, unique_name
from tests.support.logs import log_entries, wait_for_log
from tests.support.metrics import sample
from tests.support.sftp import connect, paramiko_sftp, sftp_as
from tests.support.waiting import wait_for

MAX_HANDLES = LimitsSettings().max_open_handles


def handle_refusals(gateway) -> list[dict]:
    return [e for e in log_entries(gateway.layout.log)
            if e.get("event") == "limit reached" and e.get("limit") == "maxOpenHandles"]


def test_open_handles_per_session_are_bounded(gateway) -> None:
    """Beyond maxOpenHandles an OPEN or OPENDIR fails (the descriptors of the whole server are
    not one client's to take); the session goes on, closing a file or a directory frees a
    slot, and another session logs in and downloads meanwhile. Logged once, not per request."""
    name = f"handles-{unique_name()}.txt"
    (gateway.layout.clean / "partner-a" / name).write_bytes(b"payload")
    too_many = rf"too many open handles \({MAX_HANDLES}\)"

    async def scenario() -> None:
        async with sftp_as(gateway, "consumer-a") as sftp:
            raw = sftp._handler  # OPENDIR and its handle as the protocol has them
            directory = await raw.opendir(b"/")
            files = [await sftp.open(name, "rb") for _ in range(MAX_HANDLES - 1)]
            for _ in range(2):
                with pytest.raises(asyncssh.SFTPFailure, match=too_many):
                    await sftp.open(name, "rb")
            with pytest.raises(asyncssh.SFTPFailure, match=too_many):
                await raw.opendir(b"/")
            assert await files[0].read() == b"payload"  # what is open still works
            async with sftp_as(gateway, "consumer-a") as other, other.open(name, "rb") as fresh:
                assert await fresh.read() == b"payload"
            await raw.close(directory)
            async with sftp.open(name, "rb") as again:
                assert await again.read() == b"payload"
            await files.pop().close()
            assert name in [entry.filename for entry in await sftp.readdir("/")]
            for file in files:
                await file.close()
            assert name in [entry.filename for entry in await sftp.readdir("/")]

    asyncio.run(scenario())
    refusal = wait_for_log(gateway.layout.log, lambda e: e.get("limit") == "maxOpenHandles",
                           what="handle limit refusal")
    assert refusal["user"] == "consumer-a" and refusal["value"] == MAX_HANDLES
    assert len(handle_refusals(gateway)) == 1


LIMITED = """
    limits:
      maxConnectionsPerAccount: 2
      maxConnectionsPerAddress: 3
      maxUnauthenticatedConnections: 2
      bandwidth: {uploadKiBps: 256, downloadKiBps: 256}
    """


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, keys) -> Iterator[ServerThread]:
    """A server with small connection limits, so that tests can reach them, and a bandwidth
    limit for every account (issue 27)."""
    root = tmp_path_factory.mktemp("limited")
    config = write_config(root / "ssftp.yaml", gateway_config(keys) + LIMITED)
    server = ServerThread(config, root / "data")
    yield server
    server.stop()


def connect_as(server: ServerThread, username: str, address: str = "127.0.0.1"):
    return asyncssh.connect("127.0.0.1", server.port, username=username,
                            password=PASSWORDS[username], known_hosts=None,
                            local_addr=(address, 0), login_timeout=30)


async def assert_refused(server: ServerThread, username: str, reason: str,
                         address: str = "127.0.0.1") -> None:
    with pytest.raises(asyncssh.DisconnectError, match=re.escape(reason)):
        async with connect_as(server, username, address):
            pass


async def assert_logs_in(server: ServerThread, username: str, address: str = "127.0.0.1") -> None:
    async with connect_as(server, username, address) as conn, \
            conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == "/"


def limit_refusals(server: ServerThread, limit: str) -> list[dict]:
    return [e for e in log_entries(server.layout.log)
            if e.get("event") == "limit reached" and e.get("limit") == limit]


def test_connections_per_account_and_address_are_bounded(limited) -> None:
    """An account's connections beyond maxConnectionsPerAccount are disconnected with the
    reason while other accounts still log in; an address's beyond maxConnectionsPerAddress
    likewise while other addresses still do; leaving frees the slot."""

    async def scenario() -> None:
        async with connect_as(limited, "consumer-a"), connect_as(limited, "consumer-a"):
            await assert_refused(limited, "consumer-a", "too many connections for consumer-a (2)")
            async with connect_as(limited, "partner-a"):
                await assert_refused(limited, "partner-b",
                                     "too many connections from 127.0.0.1 (3)")
                await assert_logs_in(limited, "partner-b", address="127.0.0.2")
        await assert_logs_in(limited, "consumer-a")

    asyncio.run(scenario())
    (account,) = limit_refusals(limited, "maxConnectionsPerAccount")
    assert account["user"] == "consumer-a" and account["value"] == 2
    (address,) = limit_refusals(limited, "maxConnectionsPerAddress")
    assert address["ip"] == "127.0.0.1" and address["value"] == 3


def test_connections_still_logging_in_are_bounded(limited) -> None:
    """Connections that never log in (a flood, a scanner) take at most
    maxUnauthenticatedConnections; beyond it a new one is disconnected at once, and once
    they are gone logins work again."""
    idle = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(2)]
    try:
        for sock in idle:  # the server has counted them once it has sent its version
            assert sock.recv(64).startswith(b"SSH-2.0-")
        asyncio.run(assert_refused(limited, "partner-a", "too many connections logging in (2)",
                                   address="127.0.0.3"))
    finally:
        for sock in idle:
            sock.close()

    def logs_in() -> bool:
        with contextlib.suppress(asyncssh.DisconnectError):
            asyncio.run(assert_logs_in(limited, "partner-a", address="127.0.0.3"))
            return True
        return False

    wait_for("a login once the idle connections are gone", logs_in)
    (refusal,) = limit_refusals(limited, "maxUnauthenticatedConnections")
    assert refusal["ip"] == "127.0.0.3" and refusal["value"] == 2


def test_sessions_per_connection_are_bounded(limited) -> None:
    """A connection's SFTP channels beyond maxSessionsPerConnection are refused with the
    reason, the open ones go on, and closing one frees its slot."""
    limit = LimitsSettings().max_sessions_per_connection

    async def scenario() -> None:
        async with connect_as(limited, "consumer-a") as conn:
            sessions = [await conn.start_sftp_client() for _ in range(limit)]
            with pytest.raises(asyncssh.ChannelOpenError,
                               match=re.escape(f"too many sessions on this connection ({limit})")):
                await conn.start_sftp_client()
            assert await sessions[0].realpath(".") == "/"
            closing = sessions.pop()
            closing.exit()
            await closing.wait_closed()
            sessions.append(await reopened(conn))
            assert await sessions[-1].realpath(".") == "/"
            for session in sessions:
                session.exit()

    asyncio.run(scenario())
    wait_for_log(limited.layout.log, lambda e: e.get("limit") == "maxSessionsPerConnection",
                 what="session limit refusal")
    (refusal,) = limit_refusals(limited, "maxSessionsPerConnection")
    assert refusal["user"] == "consumer-a" and refusal["value"] == limit


async def reopened(conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
    """The server frees the slot once it has closed its side of the channel too."""
    for _ in range(200):
        with contextlib.suppress(asyncssh.ChannelOpenError):
            return await conn.start_sftp_client()
        await asyncio.sleep(0.05)
    raise AssertionError("the closed session's slot was never freed")


CAPPED = """
    sftpPort: 0
    fsyncUploads: false
    limits:
      maxSessionsPerAddress: 3
    users:
      cleanDir:
        - directory: capped
          maxSessions: 2
          auth:
            username: capped
            password: capped-pw
        - directory: free
          auth:
            username: free
            password: free-pw
    """


def test_sessions_per_account_and_address_are_bounded(tmp_path: Path, gateway) -> None:
    """An account's sessions beyond its maxSessions, in all its connections, are refused with
    the reason (OpenSSH's sftp shows it), and so are an address's beyond
    maxSessionsPerAddress while other addresses still open theirs; closing one frees its
    slot; each refusal is logged (in summary)."""
    config = write_config(tmp_path / "ssftp.yaml", CAPPED)
    with beside(ServerThread(config, tmp_path / "data"), gateway) as server:

        def connect(username: str, address: str = "127.0.0.1") -> asyncssh.SSHClientConnection:
            return asyncssh.connect("127.0.0.1", server.port, username=username,
                                    password=f"{username}-pw", known_hosts=None,
                                    local_addr=(address, 0), login_timeout=30)

        async def scenario() -> None:
            async with connect("capped") as one, connect("capped") as two, \
                    connect("free") as other:
                first = await one.start_sftp_client()
                await two.start_sftp_client()
                with pytest.raises(asyncssh.ChannelOpenError,
                                   match=re.escape("too many sessions for capped (2)")):
                    await one.start_sftp_client()
                refused = await asyncio.to_thread(
                    run_sftp, server.port, "capped", ["pwd"], cwd=tmp_path,
                    password="capped-pw", log_level="INFO", timeout=120)
                assert refused.returncode != 0
                assert "too many sessions for capped (2)" in refused.stderr, refused.stderr
                await other.start_sftp_client()  # the address's third
                with pytest.raises(asyncssh.ChannelOpenError,
                                   match=re.escape("too many sessions from 127.0.0.1 (3)")):
                    await other.start_sftp_client()
                async with connect("free", "127.0.0.2") as elsewhere, \
                        elsewhere.start_sftp_client() as sftp:
                    assert await sftp.realpath(".") == "/"
                first.exit()
                again = await reopened(one)
                assert await again.realpath(".") == "/"

        asyncio.run(scenario())
        wait_for_log(server.layout.log, lambda e: e.get("limit") == "maxSessionsPerAddress",
                     what="address session limit refusal")
        account = limit_refusals(server, "maxSessions")  # OpenSSH's refusal: in summary
        assert account[0]["user"] == "capped" and account[0]["value"] == 2
        (address,) = limit_refusals(server, "maxSessionsPerAddress")
        assert address["ip"] == "127.0.0.1" and address["value"] == 3


def test_a_key_login_is_counted_once(limited, keys) -> None:
    """asyncssh asks about a key twice (offered, then signed): a connection that logs in with
    one still takes one slot of its account, and gives it back when it ends."""

    async def key_login() -> None:
        async with asyncssh.connect("127.0.0.1", limited.port, username="partner-a",
                                    client_keys=[str(keys.partner.private_path)],
                                    known_hosts=None, login_timeout=30) as conn, \
                conn.start_sftp_client() as sftp:
            assert await sftp.realpath(".") == "/"

    async def scenario() -> None:
        for _ in range(3):  # maxConnectionsPerAccount is 2
            await key_login()

    asyncio.run(scenario())


def test_an_accounts_bandwidth_holds_its_writes_and_cuts_its_reads(limited) -> None:
    """limits.bandwidth (256 KiB/s each way, so a burst of 64 KiB) as the server applies it,
    told without timing anything: a WRITE of 128 KiB waits its turn, (128 - 64) KiB at 256
    KiB/s, 0.25 s in the server's own count of delays (the first request's wait is the
    schedule's, however slow the machine); a READ of 128 KiB is answered 64 KiB at a time,
    and a whole download (asyncssh's parallel reads) still arrives whole."""
    name = f"bandwidth-{unique_name()}.bin"
    payload = os.urandom(128 * 1024)
    (limited.layout.clean / "partner-a").mkdir(parents=True, exist_ok=True)
    (limited.layout.clean / "partner-a" / name).write_bytes(payload)
    flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC

    def delayed(direction: str) -> float:
        return REGISTRY.get_sample_value("ssftp_bandwidth_delay_seconds_total",
                                         {"direction": direction}) or 0.0

    async def scenario() -> None:
        async with connect_as(limited, "partner-a") as conn, \
                conn.start_sftp_client() as sftp:
            raw = sftp._handler  # one WRITE of the whole payload, as the protocol has it
            handle = await raw.open(f"/{name}".encode(), flags, asyncssh.SFTPAttrs())
            before = delayed("upload")
            assert await raw.write(handle, 0, payload) is None
            assert delayed("upload") - before >= 0.25
            await raw.close(handle)
        async with connect_as(limited, "consumer-a") as conn, \
                conn.start_sftp_client() as sftp:
            raw = sftp._handler
            handle = await raw.open(f"/{name}".encode(), asyncssh.FXF_READ,
                                    asyncssh.SFTPAttrs())
            data, _at_end = await raw.read(handle, 0, len(payload))
            assert data == payload[:64 * 1024]
            await raw.close(handle)
            async with sftp.open(name, "rb") as whole:
                assert await whole.read() == payload

    asyncio.run(scenario())
    assert (limited.layout.staging / "partner-a" / name).read_bytes() == payload


def test_a_throttled_download_with_paramiko_takes_at_least_its_rate(limited) -> None:
    """paramiko's prefetching get of 512 KiB at limits.bandwidth's 256 KiB/s: all but the
    first burst (64 KiB) wait their turn, so it cannot take less than 1.75 s, however fast
    the machine (a lower bound only, as the issue asks; the rate's figures are bench/'s)."""
    name = f"throttled-{unique_name()}.bin"
    payload = os.urandom(512 * 1024)
    (limited.layout.clean / "partner-a").mkdir(parents=True, exist_ok=True)
    (limited.layout.clean / "partner-a" / name).write_bytes(payload)
    with paramiko_sftp(limited.port, "consumer-a", PASSWORDS["consumer-a"]) as sftp:
        started = time.monotonic()
        with sftp.open(name, "rb") as remote:
            remote.prefetch()
            received = remote.read()
        took = time.monotonic() - started
    assert received == payload
    assert took >= (512 - 64) / 256


PIPELINED_READS = 20_000
READ_SIZE = 32 * 1024
RSS_GROWTH_BOUND = 150 * 1024 * 1024


def sftp_packet(kind: int, request_id: int, *fields: bytes) -> bytes:
    body = bytes([kind]) + request_id.to_bytes(4, "big") + b"".join(fields)
    return len(body).to_bytes(4, "big") + body


def sftp_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_replies_not_read_stop_the_reading_of_requests(tmp_path: Path, keys) -> None:
    """A client that pipelines 20 000 READs of 32 KiB and reads no reply: the server stops
    reading its requests while the replies wait (backpressure) instead of buffering them all
    (RSS 73 -> 690 MiB before); its memory stays within a bound, and another session logs in
    and downloads meanwhile."""
    config = write_config(tmp_path / "ssftp.yaml", gateway_config(keys))
    server = SsftpProcess.start("serve", tmp_path, config, tmp_path / "data")
    try:
        name = f"big-{unique_name()}.bin"
        (server.layout.clean / "partner-a").mkdir(parents=True, exist_ok=True)
        (server.layout.clean / "partner-a" / name).write_bytes(os.urandom(READ_SIZE))
        before = rss_bytes(server.pid)

        async def scenario() -> None:
            async with asyncssh.connect("127.0.0.1", server.port, username="consumer-a",
                                        password=PASSWORDS["consumer-a"],
                                        known_hosts=None) as conn:
                chan, _ = await conn.create_session(asyncssh.SSHClientSession,
                                                    subsystem="sftp", encoding=None)
                chan.pause_reading()  # read no reply: they stay with the server
                handle = sftp_string(b"\0\0\0\0")  # asyncssh's first handle
                requests = [sftp_packet(1, 3, b""),  # INIT, version 3 (no request id)
                            sftp_packet(3, 1, sftp_string(name.encode()), b"\0\0\0\1",
                                        b"\0\0\0\0")]
                requests += [sftp_packet(5, 2 + i, handle, (0).to_bytes(8, "big"),
                                         READ_SIZE.to_bytes(4, "big"))
                             for i in range(PIPELINED_READS)]
                chan.write(b"".join(requests))
                async with asyncssh.connect("127.0.0.1", server.port, username="consumer-a",
                                            password=PASSWORDS["consumer-a"],
                                            known_hosts=None) as second, \
                        second.start_sftp_client() as other, other.open(name, "rb") as fresh:
                    assert len(await fresh.read()) == READ_SIZE
                peak = before
                for _ in range(50):  # the server answered 20 000 READs in ~2 s before
                    peak = max(peak, rss_bytes(server.pid))
                    if peak - before >= RSS_GROWTH_BOUND:
                        break
                    await asyncio.sleep(0.1)
                assert peak - before < RSS_GROWTH_BOUND, f"RSS {before} -> {peak} bytes"
                chan.close()

        asyncio.run(scenario())
    finally:
        server.stop()


def test_login_grace_time_is_a_setting(tmp_path: Path, keys) -> None:
    """limits.loginGraceSeconds: a connection that does not log in within it is closed (an
    idle socket that never even sends its version, here)."""
    config = write_config(tmp_path / "ssftp.yaml",
                          gateway_config(keys) + "\n    limits:\n      loginGraceSeconds: 1\n")
    server = ServerThread(config, tmp_path / "data")
    try:
        # The 30 s deadline is half the old fixed 60 s: only the setting closes it in time.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as idle:
            assert idle.recv(64).startswith(b"SSH-2.0-")
            assert idle.recv(4096) == b""  # closed by the server
        refusal = wait_for_log(server.layout.log,
                               lambda e: e.get("limit") == "loginGraceSeconds",
                               what="login grace refusal")
        assert refusal["ip"] == "127.0.0.1" and refusal["value"] == 1
    finally:
        server.stop()


# -- the process's descriptors ---------------------------------------------------------------

SOFT_NOFILE, HARD_NOFILE = 128, 256
SMALL_SESSION_HANDLES = 50


@pytest.fixture(scope="module")
def few_descriptors(tmp_path_factory: pytest.TempPathFactory, keys) -> Iterator[SsftpProcess]:
    """``ssftp serve`` started with RLIMIT_NOFILE 128 (soft) / 256 (hard), as a container or a
    systemd unit may start it, and sessions that may hold 50 handles each."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is needed to start the server with a low RLIMIT_NOFILE")
    root = tmp_path_factory.mktemp("few-descriptors")
    config = write_config(root / "ssftp.yaml", gateway_config(keys) + f"""
    limits:
      maxOpenHandles: {SMALL_SESSION_HANDLES}
    """)
    data = root / "data"
    port = free_port()
    output = root / "serve.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            ["prlimit", f"--nofile={SOFT_NOFILE}:{HARD_NOFILE}", *ssftp_command(), "serve",
             "--config", str(config), "--data-dir", str(data), "--port", str(port)],
            env=child_env(root), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    server = SsftpProcess(process, port, DataLayout.at(data), output)
    try:
        wait_for_banner(port, process, "ssftp serve", output)
        yield server
    finally:
        server.stop()


def descriptor_budget(server: SsftpProcess) -> dict[str, int]:
    """The figures the server logs at start: its descriptor limit and what it allows."""
    listening = wait_for_log(server.layout.log, lambda e: e.get("event") == "listening",
                             what="listening line")
    return {"soft": listening["descriptors_at_start"], "limit": listening["descriptors"],
            "handles": listening["handle_budget"], "connections": listening["connection_budget"]}


def test_the_open_handles_of_all_sessions_fit_the_descriptor_limit(few_descriptors) -> None:
    """The soft RLIMIT_NOFILE is raised to the hard one; the handles of all sessions together
    stop at a budget below it ("server is busy"), so that the process keeps descriptors for
    new connections and its logs: another client logs in meanwhile, what is open still reads,
    and a freed handle lets it download. Before, the sessions took every descriptor (EMFILE
    for everyone, "Too many open files")."""
    server = few_descriptors
    budget = descriptor_budget(server)
    assert (budget["soft"], budget["limit"]) == (SOFT_NOFILE, HARD_NOFILE)
    assert 0 < budget["handles"] + budget["connections"] < HARD_NOFILE
    name = f"busy-{unique_name()}.txt"
    (server.layout.clean / "partner-a").mkdir(parents=True, exist_ok=True)
    (server.layout.clean / "partner-a" / name).write_bytes(b"payload")

    async def fill(sessions: list[asyncssh.SFTPClient]) -> tuple[list, asyncssh.SFTPError]:
        """Open files in one session after the other until the server refuses."""
        held = []
        for session in sessions:
            for _ in range(SMALL_SESSION_HANDLES):
                try:
                    held.append(await session.open(name, "rb"))
                except asyncssh.SFTPError as refusal:
                    return held, refusal
        raise AssertionError(f"{len(held)} handles were opened and none was refused")

    async def scenario() -> None:
        async with connect_to(server, "consumer-a") as conn:
            sessions = [await conn.start_sftp_client() for _ in range(10)]
            held, refusal = await fill(sessions)
            assert "server is busy" in str(refusal.reason), refusal.reason
            assert len(held) == budget["handles"]
            busy = sessions[len(held) // SMALL_SESSION_HANDLES]
            with pytest.raises(asyncssh.SFTPFailure, match="server is busy"):
                await busy._handler.opendir(b"/")
            assert await held[0].read() == b"payload"
            async with connect_to(server, "consumer-a") as second, \
                    second.start_sftp_client() as other:
                assert await other.realpath(".") == "/"
                with pytest.raises(asyncssh.SFTPFailure, match="server is busy"):
                    await other.open(name, "rb")
                await held.pop().close()
                async with other.open(name, "rb") as fresh:
                    assert await fresh.read() == b"payload"
            for handle in held:
                await handle.close()
            for session in sessions:
                session.exit()

    asyncio.run(scenario())
    logins = [e for e in log_entries(server.layout.log) if e.get("event") == "login"]
    assert len(logins) >= 2 and all(e["ok"] for e in logins)  # the log was written meanwhile
    wait_for("a busy refusal logged for each of the two sessions refused",
             lambda: len(limit_refusals(server, "processHandles")) >= 2)
    assert len(limit_refusals(server, "processHandles")) == 2  # once per session
    assert {e["value"] for e in limit_refusals(server, "processHandles")} == {budget["handles"]}


# How a connection refused at accept ends for the client: the server's disconnect, or a reset.
REFUSED = (asyncssh.DisconnectError, ConnectionResetError, BrokenPipeError)


def test_connections_beyond_the_descriptor_reserve_are_refused(few_descriptors) -> None:
    """Connections (a socket each) beyond the share of descriptors kept for them are
    disconnected with "server is busy"; once some leave, logins work again."""
    server = few_descriptors
    allowed = descriptor_budget(server)["connections"]
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(allowed)]
    try:
        for sock in idle:
            assert sock.recv(64).startswith(b"SSH-2.0-")
        # The server says why and hangs up at once: the client reads "server is busy", or,
        # when the hang-up wins the race with its own first write, a reset (seen 2 in 4 runs
        # under load). The refusal's log line below says which limit it was, either way.
        with pytest.raises(REFUSED) as refused:
            asyncio.run(logs_in_to(server, "consumer-a"))
        if isinstance(refused.value, asyncssh.DisconnectError):
            assert "server is busy" in str(refused.value)
    finally:
        for sock in idle:
            sock.close()

    def logs_in() -> bool:
        with contextlib.suppress(*REFUSED):  # until the server has seen them go
            asyncio.run(logs_in_to(server, "consumer-a"))
            return True
        return False

    wait_for("a login once the idle connections are gone", logs_in)
    (refusal,) = limit_refusals(server, "processConnections")
    assert refusal["value"] == allowed and refusal["ip"] == "127.0.0.1"


def connect_to(server: SsftpProcess, username: str):
    return asyncssh.connect("127.0.0.1", server.port, username=username,
                            password=PASSWORDS[username], known_hosts=None, login_timeout=30)


async def logs_in_to(server: SsftpProcess, username: str) -> None:
    async with connect_to(server, username) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.realpath(".") == "/"


# -- refusals in a flood are logged in summary -----------------------------------------------

REFUSAL_LOG_SECONDS = 2.0
FLOOD = 200


class SummarisingServer(ServerThread):
    """A server that logs a refused connection's limit at most once per 2 s per address."""

    async def _start(self) -> Service:
        store = ConfigStore.open(self.config_path, self.layout)
        return await start_service(store, host="127.0.0.1", port=0,
                                   refusal_log_seconds=REFUSAL_LOG_SECONDS)


@pytest.fixture
def summarising(tmp_path: Path, keys, gateway) -> Iterator[SummarisingServer]:
    config = write_config(tmp_path / "ssftp.yaml", gateway_config(keys) + """
    limits:
      maxConnectionsPerAddress: 1
    """)
    with beside(SummarisingServer(config, tmp_path / "data"), gateway) as server:
        yield server


def test_a_flood_of_refused_connections_is_logged_in_summary(summarising) -> None:
    """200 connections refused from one address: one line at the first, then at most one per
    interval, each with the refusals suppressed since the line before, so that every refusal
    is counted and the log does not grow with the flood (before: 200 lines)."""
    held = socket.create_connection(("127.0.0.1", summarising.port))  # the address's one slot
    try:
        assert held.recv(64).startswith(b"SSH-2.0-")
        started = time.monotonic()
        for _ in range(FLOOD):
            with socket.create_connection(("127.0.0.1", summarising.port), timeout=30) as sock:
                while sock.recv(4096):  # version, disconnect, then closed by the server
                    pass
        elapsed = time.monotonic() - started
    finally:
        held.close()

    def counted() -> int:
        """A line is one refusal, or those it says were suppressed since the line before."""
        return sum(e.get("suppressed", 1)
                   for e in limit_refusals(summarising, "maxConnectionsPerAddress"))

    wait_for("every refusal counted in the log", lambda: counted() >= FLOOD)
    lines = limit_refusals(summarising, "maxConnectionsPerAddress")
    assert counted() == FLOOD
    assert len(lines) <= 2 + elapsed / REFUSAL_LOG_SECONDS, (len(lines), elapsed)
    assert "suppressed" not in lines[0] and lines[-1]["suppressed"] > 0
    assert all(e["ip"] == "127.0.0.1" and e["value"] == 1 for e in lines)


# -- hot reload --------------------------------------------------------------------------------


def limits_config(keys, handles: int, sessions: int, account: int) -> str:
    return gateway_config(keys) + f"""
    limits:
      maxOpenHandles: {handles}
      maxSessionsPerConnection: {sessions}
      maxConnectionsPerAccount: {account}
    """


def test_reloaded_limits_apply_to_new_connections_and_the_next_open(tmp_path: Path, keys,
                                                                     gateway) -> None:
    """A reload's limits apply to the next connection (per account, per address), to an
    established connection's next channel, and to an established session's next OPEN (lower
    and higher); what is already open stays open."""
    config = write_config(tmp_path / "ssftp.yaml", limits_config(keys, 5, 10, 5))
    server = ServerThread(config, tmp_path / "data")
    name = f"reload-{unique_name()}.txt"
    (server.layout.clean / "partner-a").mkdir(parents=True, exist_ok=True)
    (server.layout.clean / "partner-a" / name).write_bytes(b"payload")

    def reload_to(handles: int, sessions: int, account: int) -> None:
        write_config(config, limits_config(keys, handles, sessions, account))
        wait_for("the reloaded limits",
                 lambda: server.store.current.loaded.config.limits.max_open_handles == handles)

    async def scenario() -> None:
        async with connect_as(server, "consumer-a") as conn, \
                conn.start_sftp_client() as sftp:
            held = [await sftp.open(name, "rb") for _ in range(3)]
            await asyncio.to_thread(reload_to, 2, 1, 1)
            with pytest.raises(asyncssh.SFTPFailure, match=re.escape("too many open handles (2)")):
                await sftp.open(name, "rb")
            assert await held[0].read() == b"payload"
            with pytest.raises(asyncssh.ChannelOpenError,
                               match=re.escape("too many sessions on this connection (1)")):
                await conn.start_sftp_client()
            await assert_refused(server, "consumer-a", "too many connections for consumer-a (1)")
            await asyncio.to_thread(reload_to, 8, 10, 5)
            held += [await sftp.open(name, "rb") for _ in range(5)]  # beyond the first 5
            with pytest.raises(asyncssh.SFTPFailure, match=re.escape("too many open handles (8)")):
                await sftp.open(name, "rb")
            await assert_logs_in(server, "consumer-a")
            for handle in held:
                await handle.close()

    with beside(server, gateway):
        asyncio.run(scenario())


def quota_config(max_files: int) -> str:
    return f"""
    sftpPort: 0
    fsyncUploads: false
    users:
      stagingDir:
        - directory: quoted
          quota: {{maxBytes: 1048576, maxFiles: {max_files}}}
          auth:
            username: quoted
            password: quoted-pw
    """


def test_an_upload_past_the_quota_is_refused_with_the_reason_and_never_published(
        tmp_path: Path, gateway) -> None:
    """An account's quota (server.quota): the WRITE that crosses maxBytes fails with the
    reason (asyncssh, and OpenSSH's sftp on stderr) and the upload leaves nothing in staging;
    an OPEN whose attributes announce too much, or one file past maxFiles, is refused; df
    shows the quota; a reload's quota applies to the next OPEN; the metrics show the usage."""
    config = write_config(tmp_path / "ssftp.yaml", quota_config(2))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(600 << 10))
    with beside(ServerThread(config, tmp_path / "data"), gateway) as server:
        area = server.layout.staging / "quoted"

        async def scenario() -> None:
            async with connect(server.port, "quoted", "quoted-pw") as conn, \
                    conn.start_sftp_client() as sftp:
                empty = await sftp.statvfs("/")
                assert empty.blocks * empty.frsize == 1 << 20
                assert (empty.files, empty.ffree) == (2, 2)
                await sftp.put(big, "first.bin")
                # Refused at the WRITE that crosses it (asyncssh's put then raises the
                # close's error: not published, and why).
                with pytest.raises(asyncssh.SFTPFailure,
                                   match=r"quota exceeded: [\d.]+ KiB of 1\.0 MiB$"):
                    await sftp.put(big, "second.bin")
                # Its discard gave its bytes back; an OPEN that announces too many is refused.
                with pytest.raises(asyncssh.SFTPFailure,
                                   match=re.escape("quota exceeded: 600.0 KiB of 1.0 MiB")):
                    await sftp.open("announced.bin", "wb", asyncssh.SFTPAttrs(size=600 << 10))
                async with sftp.open("small.txt", "wb") as small:
                    await small.write(b"x" * 1000)
                with pytest.raises(asyncssh.SFTPFailure,
                                   match=re.escape("quota exceeded: 2 files of 2")):
                    await sftp.open("third.txt", "wb")
                full = await sftp.statvfs("/")
                assert full.bfree == ((1 << 20) - (600 << 10) - 1000) // full.frsize
                assert full.ffree == 0
                assert sample("ssftp_quota_used_files", account="quoted") == 2
                assert sample("ssftp_quota_used_bytes", account="quoted") == (600 << 10) + 1000
                write_config(config, quota_config(4))
                await asyncio.to_thread(
                    wait_for, "the reloaded quota",
                    lambda: server.store.current.accounts["quoted"].quota.max_files == 4)
                async with sftp.open("third.txt", "wb") as third:
                    await third.write(b"3")

        asyncio.run(scenario())
        result = run_sftp(server.port, "quoted", ["df", "put big.bin fourth.bin"],
                          cwd=tmp_path, password="quoted-pw")
        assert result.returncode != 0
        assert re.search(r"ssftp: write /fourth\.bin refused: quota exceeded: [\d.]+ [KM]iB of "
                         r"1\.0 MiB", result.stderr), result.stderr
        # df: Size, Used, Avail in KiB, as OpenSSH's sftp prints them.
        assert re.search(r"^\s*1024\s+", result.stdout, re.MULTILINE), result.stdout
        # Nothing of the refused uploads is left, not even a temp file.
        assert sorted(path.name for path in area.rglob("*")) == ["first.bin", "small.txt",
                                                                 "third.txt"]
        refusal = wait_for_log(server.layout.log, lambda e: e.get("event") == "refused"
                               and e.get("op") == "write", what="the quota refusal")
        assert refusal["user"] == "quoted" and refusal["reason"].startswith("quota exceeded")
