"""One greedy client cannot take the server's memory (issue: "one authenticated session can
take gigabytes"), measured on a real ``ssftp serve`` process with real asyncssh clients.

- 20 SFTP channels over two connections, each with one READ of 2^31-1 bytes whose reply the
  client never reads: the server read the whole file into each reply (RSS 77 -> 4 176 MiB).
- ``sha256sum -`` fed faster than it hashes: what arrived waited in the server (2 GiB fed:
  RSS 2 003 MiB), as asyncssh's window adjusts let the client send on.
- 200 hash commands of one account at once: 200 threads (222 and 2.2 GiB).

RSS is read from /proc while the probe runs (the peak, not what is left after), compared with
the server's idle RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Iterator

import asyncssh
import pytest

from ssftp.config.schema import LimitsSettings
from testkit.ssftp_process import SsftpProcess
from tests.support.config import PASSWORDS, gateway_config, write_config
from tests.support.gateway import unique_name
from tests.support.system import PeakSampler, proc_status
from tests.support.waiting import wait_for

RSS_GROWTH_BOUND = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, keys) -> Iterator[SsftpProcess]:
    root = tmp_path_factory.mktemp("memory")
    config = write_config(root / "ssftp.yaml", gateway_config(keys))
    server = SsftpProcess.start("serve", root, config, root / "data")
    (server.layout.clean / "partner-a").mkdir(parents=True, exist_ok=True)
    try:
        yield server
    finally:
        server.stop()


def connect(server: SsftpProcess, username: str = "consumer-a"):
    return asyncssh.connect("127.0.0.1", server.port, username=username,
                            password=PASSWORDS[username], known_hosts=None, login_timeout=60)


def sftp_packet(kind: int, request_id: int | None, *fields: bytes) -> bytes:
    body = bytes([kind]) + (b"" if request_id is None else request_id.to_bytes(4, "big"))
    body += b"".join(fields)
    return len(body).to_bytes(4, "big") + body


def sftp_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def greedy_read(name: str) -> bytes:
    """INIT, OPEN ``name`` for reading and READ 2^31-1 bytes from 0 (asyncssh's first handle
    is four zero bytes)."""
    return (sftp_packet(1, None, (3).to_bytes(4, "big"))
            + sftp_packet(3, 1, sftp_string(name.encode()), (1).to_bytes(4, "big"),
                          (0).to_bytes(4, "big"))
            + sftp_packet(5, 2, sftp_string(b"\0\0\0\0"), (0).to_bytes(8, "big"),
                          (2**31 - 1).to_bytes(4, "big")))


def assert_rss_bounded(server: SsftpProcess, sampler: PeakSampler) -> None:
    growth = sampler.peak - sampler.start
    assert growth < RSS_GROWTH_BOUND, (
        f"RSS {sampler.start >> 20} -> {sampler.peak >> 20} MiB during the probe")


def test_unread_replies_of_twenty_channels_stay_bounded(serve: SsftpProcess) -> None:
    """Two connections, 10 SFTP channels each, each READs 2^31-1 bytes of a 64 MiB file and
    reads no reply: a READ is served 4 MiB at most (a short read is legal), and a connection
    holds 8 MiB of unsent replies at most; the others wait. Another client still downloads
    the file meanwhile, and the server's RSS stays within 100 MiB of idle."""
    name = f"big-{unique_name()}.bin"
    content = os.urandom(64 << 20)
    (serve.layout.clean / "partner-a" / name).write_bytes(content)
    sessions = LimitsSettings().max_sessions_per_connection

    async def scenario() -> None:
        async with connect(serve) as first, connect(serve) as second:
            channels = []
            for conn in (first, second):
                for _ in range(sessions):
                    chan, _ = await conn.create_session(asyncssh.SSHClientSession,
                                                        subsystem="sftp", encoding=None)
                    chan.pause_reading()  # read no reply: they stay with the server
                    chan.write(greedy_read(name))
                    channels.append(chan)
            async with connect(serve) as third, third.start_sftp_client() as sftp, \
                    sftp.open(name, "rb") as fresh:
                assert hashlib.sha256(await fresh.read()).digest() == \
                    hashlib.sha256(content).digest()
            await asyncio.sleep(3)  # the server answered them in about a second before
            for chan in channels:
                chan.close()

    with PeakSampler(serve.pid, "VmRSS") as sampler:
        asyncio.run(scenario())
    assert_rss_bounded(serve, sampler)


STDIN_BYTES = 1 << 30


def test_hash_of_a_flood_on_standard_input_stays_bounded(serve: SsftpProcess) -> None:
    """``sha256sum -`` fed 1 GiB as fast as the client can send: what waits for the hash is
    bounded (the connection's socket is not read beyond 16 MiB), the digest is right, and
    the server's RSS stays within 100 MiB of idle."""
    chunk = bytes(range(256)) * 4096  # 1 MiB
    chunks = STDIN_BYTES // len(chunk)
    expected = hashlib.sha256()
    for _ in range(chunks):  # before: the client sends as fast as it can
        expected.update(chunk)

    async def scenario() -> bytes:
        async with connect(serve) as conn:
            process = await conn.create_process("sha256sum -", encoding=None)
            for _ in range(chunks):
                process.stdin.write(chunk)
                await process.stdin.drain()
            process.stdin.write_eof()
            result = await process.wait()
            assert result.exit_status == 0, result.stderr
            return result.stdout

    with PeakSampler(serve.pid, "VmRSS") as sampler:
        output = asyncio.run(scenario())
    assert output == f"{expected.hexdigest()}  -\n".encode()
    assert_rss_bounded(serve, sampler)


def test_hash_commands_of_one_account_are_capped(serve: SsftpProcess) -> None:
    """200 ``sha256sum -`` of one account at once (20 connections, 10 channels each, their
    input held open): maxHashCommandsPerAccount run, every other one is refused at once with
    the reason on stderr and exit status 1, the server's threads grow by the commands that run
    (before: 200 ran, a thread each), and those running finish with the right digest."""
    connections, channels = 20, LimitsSettings().max_sessions_per_connection
    cap = 8  # limits.maxHashCommandsPerAccount's default
    refusal = f"sha256sum: too many hash commands running for this account ({cap})"

    async def scenario() -> int:
        conns = [await connect(serve) for _ in range(connections)]
        # Logged in: the password checks' threads (asyncio's executor) are there already.
        idle_threads = proc_status(serve.pid, "Threads")
        try:
            processes = [await conn.create_process("sha256sum -", encoding=None)
                         for conn in conns for _ in range(channels)]
            for process in processes:
                with contextlib.suppress(BrokenPipeError):  # refused (and closed) already
                    process.stdin.write(b"x")  # the running ones hash it in their thread
            ending = {asyncio.ensure_future(process.wait_closed()): process
                      for process in processes}
            ended: set[asyncio.Future[None]] = set()
            async with asyncio.timeout(120):  # only turns a hang into a failure
                while len(ended) < len(processes) - cap:
                    done, _ = await asyncio.wait(set(ending) - ended,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    ended |= done
            for future in ended:
                assert ending[future].returncode == 1
                assert (await ending[future].stderr.read()).decode().startswith(refusal)
            threads = proc_status(serve.pid, "Threads")
            assert threads <= idle_threads + cap + 2, (idle_threads, threads)
            for future in set(ending) - ended:
                ending[future].stdin.write_eof()
                result = await ending[future].wait()
                assert result.exit_status == 0
                assert result.stdout == f"{hashlib.sha256(b'x').hexdigest()}  -\n".encode()
        finally:
            for conn in conns:
                conn.close()
        return idle_threads

    idle_threads = asyncio.run(scenario())
    wait_for("the hash commands' threads to end",
             lambda: proc_status(serve.pid, "Threads") <= idle_threads + 2)
