"""Clients of the gateway for tests: an asyncssh password login and what a refusal must look like
(SSH_FX_PERMISSION_DENIED, and the same connection still usable); a paramiko one."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import paramiko
import pytest

from ssftp.layout import TEMP_PREFIX
from tests.support.config import PARTNER_PASSWORD, PASSWORDS


def connect(port: int, username: str, password: str):
    return asyncssh.connect("127.0.0.1", port, username=username, password=password,
                            known_hosts=None, client_keys=None, agent_path=None,
                            preferred_auth="password")


@contextlib.asynccontextmanager
async def sftp_as(gateway, username: str) -> AsyncIterator[asyncssh.SFTPClient]:
    async with connect(gateway.port, username, PASSWORDS[username]) as conn, \
            conn.start_sftp_client() as sftp:
        yield sftp


@contextlib.contextmanager
def paramiko_sftp(port: int, username: str = "partner-a",
                  password: str = PARTNER_PASSWORD) -> Iterator[paramiko.SFTPClient]:
    """paramiko's SFTP client, logged in with a password (partner-a's unless told)."""
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.connect(username=username, password=password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        with sftp:
            yield sftp
    finally:
        transport.close()


async def assert_denied(sftp: asyncssh.SFTPClient, awaitable) -> asyncssh.SFTPError:
    """Refused with SSH_FX_PERMISSION_DENIED, and the same connection still works after."""
    with pytest.raises(asyncssh.SFTPPermissionDenied) as info:
        await awaitable
    assert stat.S_ISDIR((await sftp.stat("/")).permissions)
    assert await sftp.realpath(".") == "/"
    return info.value


async def upload(sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: str = "wb") -> None:
    async with sftp.open(path, mode) as handle:
        await handle.write(data)


async def download(sftp: asyncssh.SFTPClient, path: str) -> bytes:
    async with sftp.open(path, "rb") as handle:
        return await handle.read()


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)]
