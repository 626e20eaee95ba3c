"""The SSH algorithms the server offers: modern ones only.

Explicit allow-lists rather than "asyncssh's defaults minus the bad ones", so an asyncssh
upgrade cannot quietly add an algorithm; each list is intersected with what the installed
asyncssh supports, so an algorithm it lacks (e.g. ML-KEM without liboqs) is simply left out.
No SHA-1 (ssh-rsa signatures, hmac-sha1, group14-sha1), no CBC, no GSS.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncssh
import asyncssh.encryption
import asyncssh.kex
import asyncssh.mac
import asyncssh.public_key

KEX = (
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
)
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "umac-128@openssh.com",
)
SIGNATURES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def _available(wanted: tuple[str, ...], supported: list[bytes]) -> list[str]:
    names = {name.decode() for name in supported}
    return [name for name in wanted if name in names]


SIGNATURE_NAMES = frozenset(name.encode() for name in SIGNATURES)


def modern_signatures(algorithms: Iterable[bytes]) -> list[bytes]:
    """The given signature algorithms that are on the allow-list, in their order."""
    return [alg for alg in algorithms if alg in SIGNATURE_NAMES]


def modern_host_keypairs(keys: list[asyncssh.SSHKey]) -> list[asyncssh.SSHKeyPair]:
    """Host keys that sign only with SHA-2 or better.

    ``signature_algs`` does not limit what a host key offers: an RSA host key would still sign
    with ssh-rsa (SHA-1) for a client that asks, so each key pair's list is cut down here.
    """
    keypairs = list(asyncssh.load_keypairs(keys))
    for keypair in keypairs:
        keypair.host_key_algorithms = modern_signatures(keypair.host_key_algorithms)
    return keypairs


def server_algorithm_options() -> dict[str, list[str]]:
    """Keyword arguments for ``asyncssh.create_server``."""
    return {
        "kex_algs": _available(KEX, asyncssh.kex.get_kex_algs()),
        "encryption_algs": _available(CIPHERS, asyncssh.encryption.get_encryption_algs()),
        "mac_algs": _available(MACS, asyncssh.mac.get_mac_algs()),
        "signature_algs": _available(SIGNATURES, asyncssh.public_key.get_public_key_algs()),
    }
