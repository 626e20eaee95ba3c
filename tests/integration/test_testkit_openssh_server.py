"""The OpenSSH test server helper: a real sshd that asyncssh can log in to and use over SFTP."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from testkit.openssh_server import OpenSshServer, sshd_available

pytestmark = pytest.mark.skipif(
    not sshd_available(), reason="OpenSSH server (/usr/sbin/sshd) is not installed"
)


def write_client_key(directory: Path, name: str) -> tuple[asyncssh.SSHKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{name}@test")
    key.write_private_key(directory / name)
    (directory / name).chmod(0o600)
    return key, key.export_public_key().decode().strip()


@pytest.fixture
def client_key(tmp_path: Path) -> tuple[asyncssh.SSHKey, str]:
    keys = tmp_path / "client-keys"
    keys.mkdir()
    return write_client_key(keys, "client")


@pytest.fixture
def server(tmp_path: Path, client_key: tuple[asyncssh.SSHKey, str]) -> Iterator[OpenSshServer]:
    with OpenSshServer.start(
        tmp_path / "sshd", authorized_keys=[client_key[1]], sftp_root=tmp_path / "remote"
    ) as running:
        yield running


def known_hosts_file(path: Path, line: str) -> Path:
    path.write_text(line + "\n")
    return path


async def test_sftp_put_list_and_read_back(server: OpenSshServer, tmp_path: Path,
                                           client_key: tuple[asyncssh.SSHKey, str]) -> None:
    local = tmp_path / "hello.txt"
    local.write_bytes(b"hello from asyncssh\n")
    known_hosts = known_hosts_file(tmp_path / "known_hosts", server.known_hosts_line)

    async with asyncssh.connect(
        server.host, port=server.port, username=server.username,
        client_keys=[client_key[0]], known_hosts=str(known_hosts),
    ) as conn, conn.start_sftp_client() as sftp:
        await sftp.put(str(local), "hello.txt")
        assert sorted(await sftp.listdir(".")) == [".", "..", "hello.txt"]
        async with sftp.open("hello.txt", "rb") as remote:
            assert await remote.read() == b"hello from asyncssh\n"
        assert await sftp.realpath(".") == str(server.sftp_root)

    assert (server.sftp_root / "hello.txt").read_bytes() == b"hello from asyncssh\n"
    assert "Accepted publickey" in server.log_path.read_text()


async def test_unauthorized_key_is_refused(server: OpenSshServer, tmp_path: Path) -> None:
    stranger_dir = tmp_path / "stranger"
    stranger_dir.mkdir()
    stranger, _ = write_client_key(stranger_dir, "stranger")
    known_hosts = known_hosts_file(tmp_path / "known_hosts", server.known_hosts_line)

    with pytest.raises(asyncssh.PermissionDenied):
        async with asyncssh.connect(
            server.host, port=server.port, username=server.username,
            client_keys=[stranger], known_hosts=str(known_hosts),
        ):
            pass


async def test_wrong_host_key_is_not_verifiable(server: OpenSshServer, tmp_path: Path,
                                                client_key: tuple[asyncssh.SSHKey, str]) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    blob = impostor.export_public_key().decode().split()[1]
    line = f"[{server.host}]:{server.port} ssh-ed25519 {blob}"
    assert line != server.known_hosts_line
    known_hosts = known_hosts_file(tmp_path / "known_hosts", line)

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with asyncssh.connect(
            server.host, port=server.port, username=server.username,
            client_keys=[client_key[0]], known_hosts=str(known_hosts),
        ):
            pass


def test_fingerprint_matches_ssh_keygen(server: OpenSshServer) -> None:
    public = server.host_key_path.with_name(server.host_key_path.name + ".pub")
    output = subprocess.run(
        ["ssh-keygen", "-lf", str(public)], check=True, capture_output=True, text=True
    ).stdout
    assert server.fingerprint == output.split()[1]
    assert server.fingerprint.startswith("SHA256:")
    assert server.known_hosts_line.startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")


def test_invalid_extra_config_is_rejected(tmp_path: Path, client_key: tuple[asyncssh.SSHKey, str]
                                          ) -> None:
    with pytest.raises(RuntimeError, match="NoSuchKeyword"):
        OpenSshServer.start(tmp_path / "sshd", authorized_keys=[client_key[1]],
                            sftp_root=tmp_path / "remote", extra_config="NoSuchKeyword yes")


def test_stop_closes_the_port(tmp_path: Path, client_key: tuple[asyncssh.SSHKey, str]) -> None:
    server = OpenSshServer.start(tmp_path / "sshd", authorized_keys=[client_key[1]],
                                 sftp_root=tmp_path / "remote")
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        assert sock.recv(256).startswith(b"SSH-2.0-")
    server.stop()
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5).close()
