"""OpenSSH public key lines (``authorized_keys`` format) as configured per account.

The core keeps only the key blob (the SSH wire encoding). The server compares the blob the
client proves it holds with these, so any key type the SSH library can verify works here
without this module knowing the algorithms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from ssftp.errors import PublicKeyError


@dataclass(frozen=True)
class AuthorizedKey:
    algorithm: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it: safe to log, unlike the key itself."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def fingerprint_of(blob: bytes) -> str:
    return AuthorizedKey("", blob, "").fingerprint


def parse_public_key(line: str) -> AuthorizedKey:
    """Parse ``<type> <base64> [comment]``; the type inside the blob must match the one outside."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise PublicKeyError("expected '<key type> <base64 data> [comment]'")
    algorithm, data = parts[0], parts[1]
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PublicKeyError(f"{algorithm} key data is not valid base64") from exc
    if len(blob) < 4:
        raise PublicKeyError(f"{algorithm} key data is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    inner = blob[4 : 4 + length]
    if len(inner) != length or inner.decode("ascii", "replace") != algorithm:
        raise PublicKeyError(
            f"key data does not start with its type {algorithm!r} (truncated or mislabelled key)"
        )
    if len(blob) <= 4 + length:
        raise PublicKeyError(f"{algorithm} key has no key material (truncated key)")
    return AuthorizedKey(algorithm, blob, parts[2] if len(parts) > 2 else "")
