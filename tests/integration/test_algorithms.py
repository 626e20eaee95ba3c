"""Only modern SSH algorithms are offered: a client that insists on a legacy one cannot connect."""

from __future__ import annotations

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


async def test_rsa_host_key_uses_sha2(gateway):
    async with await connect(gateway.port, server_host_key_algs=["rsa-sha2-512"]) as conn:
        assert conn.get_extra_info("server_version") == "SSH-2.0-ssftp"
