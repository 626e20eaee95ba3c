"""The server's own ways with SSH packets against real clients: every byte arrives, under every
cipher the server offers and across key exchanges either side starts. Sent (server.packet_send):
a packet sealed with a stale IV or sequence number, or sent in the middle of a key exchange,
would make the client drop the connection, and the download would fail. Received
(server.packet_receive): a byte lost or repeated where a read is cut into packet-sized pieces
would fail the packet's MAC, or change the upload."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from server.algorithms import CIPHERS
from server.packet_send import trim_channel, trim_connection
from testkit.openssh_server import free_port
from tests.support.config import PASSWORDS
from tests.support.gateway import unique_name

# Several MiB: hundreds of 32 KiB packets, and several key exchanges at the limits below.
FILE_BYTES = 3 << 20
REKEY_BYTES = 256 << 10
# A read whose reply is several packets, sent in one flush of the channel: a rekey comes due
# in the middle of some (server.packet_send holds a flush's packets for one write).
BIG_READ_BYTES = 200 << 10


def _download_source(gateway) -> tuple[str, str]:
    """A random file in consumer-a's clean/ directory: its name there and its SHA-256."""
    name = f"packets-{unique_name()}.bin"
    data = os.urandom(FILE_BYTES)
    (gateway.layout.clean / "partner-a" / name).write_bytes(data)
    return name, hashlib.sha256(data).hexdigest()


async def _fetched(port: int, name: str, target: Path, *, username: str = "consumer-a",
                   block_size: int = -1, **options) -> str:
    async with asyncssh.connect("127.0.0.1", port, username=username,
                                password=PASSWORDS.get(username, "pw"), known_hosts=None,
                                client_keys=None, agent_path=None,
                                preferred_auth="password", **options) as conn, \
            conn.start_sftp_client() as sftp:
        await sftp.get(name, target, block_size=block_size)
    return hashlib.sha256(target.read_bytes()).hexdigest()


@pytest.mark.parametrize("cipher", CIPHERS)
async def test_a_download_arrives_whole_under_each_cipher(gateway, tmp_path, cipher):
    name, digest = _download_source(gateway)
    assert await _fetched(gateway.port, name, tmp_path / "got",
                          encryption_algs=[cipher]) == digest


@pytest.mark.parametrize("cipher", ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                                    "aes128-ctr"])
async def test_an_upload_arrives_whole(gateway, tmp_path, cipher):
    """Several MiB put at once: the socket's reads carry many packets, cut at CHUNK_BYTES."""
    name = f"packets-{unique_name()}.bin"
    data = os.urandom(FILE_BYTES)
    (tmp_path / name).write_bytes(data)
    async with asyncssh.connect("127.0.0.1", gateway.port, username="partner-a",
                                password=PASSWORDS["partner-a"], known_hosts=None,
                                client_keys=None, agent_path=None, preferred_auth="password",
                                encryption_algs=[cipher]) as conn, \
            conn.start_sftp_client() as sftp:
        await sftp.put(tmp_path / name, name)
    assert (gateway.layout.staging / "partner-a" / name).read_bytes() == data


async def test_a_download_arrives_whole_across_the_clients_key_exchanges(gateway, tmp_path):
    name, digest = _download_source(gateway)
    assert await _fetched(gateway.port, name, tmp_path / "got", rekey_bytes=REKEY_BYTES,
                          encryption_algs=["aes128-gcm@openssh.com"]) == digest


class _Counting(asyncssh.SSHServer):
    """A server connection with the trimmed send path that counts the key exchanges it
    starts (asyncssh's own ``_send_kexinit``, wrapped: it has no public count)."""

    started = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        trim_connection(conn)
        start = conn._send_kexinit

        def counted() -> None:
            _Counting.started += 1
            start()

        conn._send_kexinit = counted

    def begin_auth(self, username: str) -> bool:
        return True

    @staticmethod
    def sftp_server(root: Path, chan: Any) -> asyncssh.SFTPServer:
        """asyncssh's SFTP server on a channel trimmed as ssftp's are: the packets of each of
        its flushes are held for one write, and a rekey's packets must go after them. (The
        factory is given the channel wrapped in asyncssh's line editor.)"""
        trim_channel(chan._orig_chan)
        return asyncssh.SFTPServer(chan, chroot=os.fsencode(root))

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return True


@pytest.mark.parametrize("cipher", ["aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"])
async def test_a_download_arrives_whole_across_the_servers_key_exchanges(tmp_path, cipher):
    """The server's own rekeys (due every REKEY_BYTES sent) interrupt the sealed packets: each
    is then sent by asyncssh, which starts the key exchange, and sealing resumes under the new
    keys. On a bare asyncssh server, so that its rekey limit can be set."""
    _Counting.started = 0
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(FILE_BYTES)
    (root / "big.bin").write_bytes(data)
    port = free_port()
    listener = await asyncssh.listen(
        "127.0.0.1", port, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        server_factory=_Counting, rekey_bytes=REKEY_BYTES,
        sftp_factory=lambda chan: _Counting.sftp_server(root, chan))
    try:
        got = await _fetched(port, "big.bin", tmp_path / "got", username="anyone",
                             block_size=BIG_READ_BYTES, encryption_algs=[cipher])
    finally:
        listener.close()
        await listener.wait_closed()
    assert got == hashlib.sha256(data).hexdigest()
    assert _Counting.started >= FILE_BYTES // REKEY_BYTES - 1
