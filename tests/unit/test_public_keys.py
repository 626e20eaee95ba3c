"""ssftp.public_keys: public key lines and their fingerprints (as ssh-keygen prints them), and
the lines that are refused with the reason."""

from __future__ import annotations

import subprocess

import asyncssh
import pytest

from ssftp.errors import PublicKeyError
from ssftp.public_keys import parse_public_key


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
