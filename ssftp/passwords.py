"""Password hashing and verification for account passwords in ssftp.yaml.

A configured password is either a bcrypt hash (``$2a$``/``$2b$``/``$2y$``), an argon2id hash, or
plaintext (accepted for sSFTP compatibility, with a warning). Verification is constant-time for
all three, and unknown users are checked against a dummy hash so that timing does not reveal
which usernames exist.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Literal

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ssftp.errors import InvalidValueError, PasswordFormatError

Scheme = Literal["bcrypt", "argon2id", "plaintext"]

_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$")
_ARGON2ID = re.compile(r"^\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
_argon2 = PasswordHasher()


@dataclass(frozen=True)
class PasswordVerifier:
    """A configured password, parsed once at config load rather than at every login."""

    scheme: Scheme
    _secret: bytes = field(repr=False)

    @classmethod
    def parse(cls, value: str) -> PasswordVerifier:
        if value.startswith("$argon2"):
            if not _ARGON2ID.match(value):
                raise PasswordFormatError(
                    "looks like an argon2 hash but is not a valid argon2id hash "
                    "(only $argon2id$ is accepted)"
                )
            return cls("argon2id", value.encode())
        if value.startswith(("$2a$", "$2b$", "$2y$")):
            if not _BCRYPT.match(value):
                raise PasswordFormatError("looks like a bcrypt hash but is malformed")
            return cls("bcrypt", value.encode())
        if not value:
            raise PasswordFormatError("empty password")
        return cls("plaintext", value.encode())

    def verify(self, candidate: str) -> bool:
        """Check a login attempt. Slow for hashes by design: call it off the event loop."""
        given = candidate.encode("utf-8", "surrogateescape")
        if self.scheme == "plaintext":
            return hmac.compare_digest(given, self._secret)
        if self.scheme == "bcrypt":
            # bcrypt only looks at the first 72 bytes; refuse longer candidates rather than
            # accepting any string that shares a 72-byte prefix with the password.
            return len(given) <= 72 and bcrypt.checkpw(given, self._secret)
        try:
            return _argon2.verify(self._secret.decode(), given)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def hash_password(password: str, scheme: Literal["bcrypt", "argon2id"] = "bcrypt") -> str:
    """Hash a password for ssftp.yaml (``ssftp hash-password``)."""
    if not password:
        raise InvalidValueError("refusing to hash an empty password")
    if scheme == "bcrypt":
        encoded = password.encode()
        if len(encoded) > 72:
            raise InvalidValueError("bcrypt uses at most 72 bytes of a password; use argon2id")
        return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=12)).decode()
    return _argon2.hash(password)


# Verified against when the username is unknown, so a miss costs as much as a wrong password.
DUMMY_VERIFIER = PasswordVerifier.parse(
    "$2b$12$DDqqGd1eX20FeKutqKbY/.SICVRwmwh0k8CGw2kE.5VaqHF7hG62q"
)
