"""Only modern SSH algorithms are offered: a client that insists on a legacy one cannot connect."""

from __future__ import annotations

import logging
import threading

import asyncssh
import pytest

from tests.support.config import PARTNER_PASSWORD


async def connect(port: int, **options):
    return await asyncssh.connect("127.0.0.1", port, username="partner-a",
                                  password=PARTNER_PASSWORD, known_hosts=None,
                                  client_keys=None, **options)


@pytest.mark.parametrize(
    "legacy",
    [
        {"encryption_algs": ["aes128-cbc", "aes256-cbc", "3des-cbc"]},
        {"mac_algs": ["hmac-sha1", "hmac-md5"], "encryption_algs": ["aes128-ctr"]},
        {"kex_algs": ["diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1"]},
        {"server_host_key_algs": ["ssh-rsa"]},
    ],
    ids=["cbc", "sha1-mac", "sha1-kex", "sha1-host-signature"],
)
async def test_legacy_algorithms_are_refused(gateway, legacy):
    with pytest.raises((asyncssh.KeyExchangeFailed, asyncssh.DisconnectError)):
        conn = await connect(gateway.port, **legacy)
        conn.close()


async def test_no_ignore_packet_comes_before_each_reply(gateway, caplog):
    """asyncssh puts an SSH_MSG_IGNORE before every packet it sends, a countermeasure for CBC
    only, which the server does not offer; the server sends none (server.packet_send).
    Read from asyncssh's packet log of the client's side (the server runs on a thread of its
    own in this process, and logs to the same logger)."""
    asyncssh.set_debug_level(3)
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncssh"):
            async with await connect(gateway.port) as conn, conn.start_sftp_client() as sftp:
                for _ in range(5):
                    await sftp.listdir(".")
    finally:
        asyncssh.set_debug_level(1)
    client = threading.get_ident()
    received = [record.getMessage() for record in caplog.records
                if record.thread == client and " Received MSG_" in record.getMessage()]
    assert any("MSG_CHANNEL_DATA" in line for line in received), received
    assert not [line for line in received if "MSG_IGNORE" in line]


async def test_rsa_host_key_uses_sha2(gateway):
    async with await connect(gateway.port, server_host_key_algs=["rsa-sha2-512"]) as conn:
        assert conn.get_extra_info("server_version") == "SSH-2.0-ssftp"
