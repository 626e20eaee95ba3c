"""ssftp.passwords: plaintext, bcrypt in its three spellings and argon2id, and what is refused."""

from __future__ import annotations

import bcrypt
import pytest

from ssftp.errors import PasswordFormatError
from ssftp.passwords import DUMMY_VERIFIER, PasswordVerifier, hash_password


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_spellings(prefix):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    verifier = PasswordVerifier.parse(prefix + hashed[4:])
    assert verifier.scheme == "bcrypt"
    assert verifier.verify("s3cret")
    assert not verifier.verify("s3cret ")


def test_argon2id_and_plaintext():
    argon = PasswordVerifier.parse(hash_password("pw-ü", "argon2id"))
    assert argon.scheme == "argon2id" and argon.verify("pw-ü") and not argon.verify("pw-u")
    plain = PasswordVerifier.parse("plain-pw")
    assert plain.scheme == "plaintext" and plain.verify("plain-pw") and not plain.verify("plain")
    assert "plain-pw" not in repr(plain)


def test_bcrypt_refuses_candidates_past_72_bytes():
    password = "x" * 72
    verifier = PasswordVerifier.parse(hash_password(password))
    assert verifier.verify(password)
    assert not verifier.verify(password + "anything")


@pytest.mark.parametrize("value", ["$argon2i$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "$2b$1$x", ""])
def test_malformed_hashes_are_refused(value):
    with pytest.raises(PasswordFormatError):
        PasswordVerifier.parse(value)


def test_dummy_verifier_matches_nothing_plausible():
    assert DUMMY_VERIFIER.scheme == "bcrypt"
    assert not DUMMY_VERIFIER.verify("")
