"""The server's host keys: ed25519, ECDSA P-256 and RSA-3072, generated once and then reused.

Clients pin these keys in known_hosts, so they must survive restarts and be shared by every
server instance on the same data root. A key is created under a temp name and linked into
place, so two instances starting together cannot overwrite each other's key.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import asyncssh

from ssftp.moves import write_durably

# (file name part, algorithm, key size where the algorithm has a choice)
KEY_TYPES: list[tuple[str, str, int | None]] = [
    ("ed25519", "ssh-ed25519", None),
    ("ecdsa", "ecdsa-sha2-nistp256", None),
    ("rsa", "ssh-rsa", 3072),
]


def _create(path: Path, algorithm: str, key_size: int | None) -> None:
    key = (asyncssh.generate_private_key(algorithm) if key_size is None
           else asyncssh.generate_private_key(algorithm, key_size=key_size))
    # If another instance won the race, its key stays and is used.
    with contextlib.suppress(FileExistsError):
        write_durably(path, key.export_private_key("openssh"), replace=False, mode=0o600)


def load_host_keys(system_dir: Path) -> list[asyncssh.SSHKey]:
    """Load (creating on first start) the host keys kept in ``system/``."""
    keys = []
    for name, algorithm, key_size in KEY_TYPES:
        path = system_dir / f"ssh_host_{name}_key"
        if not path.exists():
            _create(path, algorithm, key_size)
        keys.append(asyncssh.read_private_key(path))
    return keys
