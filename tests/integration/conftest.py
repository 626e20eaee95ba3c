"""Fixtures of the integration tier: a real OpenSSH sshd (the remote end of the scheduled
downloads and uploads) with the client key it trusts, one per module that asks for it."""

from __future__ import annotations

import asyncssh
import pytest

from testkit.openssh_server import OpenSshServer


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, client_key: asyncssh.SSHKey):
    root = tmp_path_factory.mktemp("remote")
    server = OpenSshServer.start(tmp_path_factory.mktemp("sshd"),
                                 authorized_keys=[client_key.export_public_key().decode()],
                                 sftp_root=root)
    yield server
    server.stop()
