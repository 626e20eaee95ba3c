"""Passwords (plaintext, bcrypt in its three spellings, argon2id) and public key lines."""

from __future__ import annotations

import subprocess

import asyncssh
import bcrypt
import pytest

from ssftp.errors import PasswordFormatError, PublicKeyError
from ssftp.passwords import DUMMY_VERIFIER, PasswordVerifier, hash_password
from ssftp.public_keys import parse_public_key


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


@pytest.mark.parametrize("algorithm", ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"])
def test_public_key_lines_and_fingerprints(tmp_path, algorithm):
    key = asyncssh.generate_private_key(algorithm, comment="me@host")
    line = key.export_public_key("openssh").decode()
    parsed = parse_public_key(line)
    assert parsed.algorithm == algorithm
    assert parsed.blob == key.public_data
    assert parsed.comment == "me@host"
    (tmp_path / "k.pub").write_text(line)
    keygen = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")],
                            capture_output=True, text=True, check=True)
    assert parsed.fingerprint in keygen.stdout


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("ssh-ed25519", "expected '<key type> <base64 data>"),
        ("ssh-ed25519 AAAA!!!!", "not valid base64"),
        ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIMvLyrLqYfR2+zd0g0jVaTn6R2ZQOtR+fQwV2x5Z4m4N",
         "does not start with its type"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "no key material"),
    ],
)
def test_bad_public_key_lines(line, reason):
    with pytest.raises(PublicKeyError, match=reason):
        parse_public_key(line)
