"""The clients that drive a benchmark, timed the same way against every server.

Transfers use the OpenSSH ``sftp`` client in batch mode with aes128-gcm@openssh.com, what
partners' scripts run (``testkit.sftp_client.run_sftp``, the tests' own way to call it). Logins,
idle sessions, the single-file latency and one download use an asyncssh client in this process,
so that no process start is timed along with what is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from testkit.sftp_client import run_sftp

CIPHER = "aes128-gcm@openssh.com"
HOST = "127.0.0.1"


class ClientFailedError(RuntimeError):
    """A client command failed, so its timing would mean nothing."""


@dataclass(frozen=True)
class Login:
    """Who logs in where: one server's port, user name and the client key it accepts."""

    port: int
    username: str
    key: Path

    async def connect(self) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            HOST, self.port, username=self.username, client_keys=[str(self.key)],
            known_hosts=None, encryption_algs=[CIPHER], agent_path=None, config=[],
            preferred_auth="publickey")


def timed_sftp(login: Login, commands: list[str], cwd: Path) -> float:
    """Seconds one ``sftp -b`` session takes for ``commands``, from start to exit."""
    started = time.perf_counter()
    result = run_sftp(login.port, login.username, commands, cwd=cwd, key=login.key)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise ClientFailedError(
            f"sftp to port {login.port} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


def concurrent_sftp(sessions: list[tuple[Login, list[str]]], cwd: Path) -> float:
    """Seconds from starting every ``sftp -b`` session at once until the last has exited:
    what a batch of partners fetching together waits for."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        results = list(pool.map(
            lambda session: run_sftp(session[0].port, session[0].username, session[1],
                                     cwd=cwd, key=session[0].key),
            sessions))
    elapsed = time.perf_counter() - started
    for (login, _commands), result in zip(sessions, results, strict=True):
        if result.returncode != 0:
            raise ClientFailedError(f"sftp to port {login.port} failed ({result.returncode}): "
                                    f"{result.stderr.strip()}")
    return elapsed


async def timed_get(login: Login, remote: str, local: Path) -> float:
    """Seconds asyncssh's ``SFTPClient.get()`` takes for one file with its default block size
    and requests in flight, what a Python partner's script gets; the login is not timed (the
    logins workload has it)."""
    async with await login.connect() as connection, connection.start_sftp_client() as sftp:
        started = time.perf_counter()
        await sftp.get(remote, local)
        seconds = time.perf_counter() - started
    return seconds


async def login_rate(login: Login, count: int) -> float:
    """Logins per second over ``count`` in a row: connect, key auth, open SFTP, close."""
    started = time.perf_counter()
    for _ in range(count):
        async with await login.connect() as connection, connection.start_sftp_client():
            pass
        await connection.wait_closed()
    return count / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def idle_sessions(login: Login, count: int) -> AsyncIterator[int]:
    """Hold ``count`` logged-in connections, each with an SFTP session open, then close all."""
    connections: list[asyncssh.SSHClientConnection] = []
    sessions: list[asyncssh.SFTPClient] = []
    try:
        for _ in range(count):
            connection = await login.connect()
            connections.append(connection)
            sessions.append(await connection.start_sftp_client())
        # Every session answers once, so the server has finished setting each one up.
        await asyncio.gather(*(session.getcwd() for session in sessions))
        yield len(sessions)
    finally:
        for session in sessions:
            session.exit()
        for connection in connections:
            connection.close()
        await asyncio.gather(*(connection.wait_closed() for connection in connections),
                             return_exceptions=True)


@dataclass(frozen=True)
class Soak:
    """What a soak measured: each file's seconds from its close until it was in the target,
    and the files per second the clients uploaded."""

    latencies: list[float]
    uploaded_rate: float


async def soak(login: Login, target: Path, *, clients: int, rate: float, seconds: float,
               file_sizes: tuple[int, ...], poll: float = 0.005, timeout: float = 300.0) -> Soak:
    """``clients`` connections uploading together, ``rate`` files per second in all for
    ``seconds``: each client on a fixed schedule of its own, staggered, cycling through
    ``file_sizes`` (random bytes), so the same files come at the same moments in every run.
    A client that falls behind its schedule uploads its next file at once: the rate uploaded
    then shows the gateway did not keep up. Files reaching ``target`` are timed and removed
    there as they arrive."""
    blobs = {size: os.urandom(size) for size in set(file_sizes)}
    closed: dict[str, float] = {}
    interval = clients / rate
    started = time.perf_counter()

    async def client(number: int) -> None:
        async with await login.connect() as connection, \
                connection.start_sftp_client() as sftp:
            slot = 0
            while (due := started + (slot + number / clients) * interval) < started + seconds:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                size = file_sizes[(slot * clients + number) % len(file_sizes)]
                name = f"soak-{number}-{slot:05d}.bin"
                async with sftp.open(name, "wb") as handle:
                    await handle.write(blobs[size])
                closed[name] = time.perf_counter()
                slot += 1

    arrived: dict[str, float] = {}

    async def watch(uploading: asyncio.Future[list[None]]) -> None:
        deadline = None
        while not uploading.done() or len(arrived) < len(closed):
            if uploading.done() and deadline is None:
                deadline = time.perf_counter() + timeout
            with os.scandir(target) as entries:
                names = [entry.name for entry in entries if entry.name in closed]
            now = time.perf_counter()
            for name in names:
                arrived[name] = now
                (target / name).unlink()
            if deadline is not None and now > deadline:
                raise ClientFailedError(f"{len(closed) - len(arrived)} soak files did not reach "
                                        f"{target} within {timeout:.0f} s")
            await asyncio.sleep(poll)

    uploading = asyncio.gather(*(client(number) for number in range(clients)))
    await asyncio.gather(uploading, watch(uploading))
    # N files fill N slots of 1/rate: a gateway that keeps up comes close to ``rate``.
    elapsed = max(closed.values()) - started + 1 / rate
    return Soak([arrived[name] - closed[name] for name in closed], len(closed) / elapsed)


async def upload_latencies(login: Login, target: Path, count: int, poll: float = 0.005,
                           timeout: float = 60.0) -> list[float]:
    """Seconds from an upload's close until the file is in ``target`` (a scanned-file area).

    One connection for all files: what is timed is the gateway's work after the close
    reply, not the login.
    """
    latencies = []
    async with await login.connect() as connection, connection.start_sftp_client() as sftp:
        for index in range(count):
            name = f"latency-{index:03d}-{time.time_ns()}.txt"
            async with sftp.open(name, "wb") as handle:
                await handle.write(f"latency sample {index}\n".encode())
            closed = time.perf_counter()
            deadline = closed + timeout
            while not (target / name).exists():
                if time.perf_counter() > deadline:
                    raise ClientFailedError(f"{name} did not reach {target} in {timeout:.0f} s")
                await asyncio.sleep(poll)
            latencies.append(time.perf_counter() - closed)
    return latencies
