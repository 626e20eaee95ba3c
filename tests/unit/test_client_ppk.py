"""PuTTY key files, as PuTTY's own puttygen writes them, read into the same keys.

Each key is made by puttygen, written by it in formats 2 and 3, encrypted and not, and read
back: the key must be exactly the one puttygen exports in OpenSSH's format (the private
numbers, compared as PKCS#8). A wrong passphrase, a missing one, and every way a file can be
cut short or damaged are one-line ``InvalidValueError``s, never another exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from client.ppk import import_ppk, is_ppk
from ssftp.errors import InvalidValueError
from testkit.putty_keys import puttygen_available, puttygen_key, to_openssh, to_ppk

pytestmark = pytest.mark.skipif(not puttygen_available(),
                                reason="puttygen (putty-tools) is not installed")

PASSPHRASE = "correct horse ☃"
# puttygen -t, -b; ssh-dss is left out: OpenSSH no longer uses DSA keys.
KEY_TYPES = {"ssh-ed25519": ("ed25519", None), "ssh-ed448": ("ed448", None),
             "ssh-rsa": ("rsa", 2048), "ecdsa-sha2-nistp256": ("ecdsa", 256),
             "ecdsa-sha2-nistp384": ("ecdsa", 384), "ecdsa-sha2-nistp521": ("ecdsa", 521)}
# (format version, encrypted)
FORMATS = [(3, True), (3, False), (2, True), (2, False)]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, asyncssh.SSHKey]]:
    """Per key type: puttygen's PPK file (format 3, unencrypted) and the key as puttygen
    exports it to OpenSSH."""
    directory = tmp_path_factory.mktemp("ppk")
    made = {}
    for algorithm, (key_type, bits) in KEY_TYPES.items():
        ppk = puttygen_key(key_type, directory / f"{algorithm}.ppk", bits)
        made[algorithm] = (ppk, asyncssh.read_private_key(
            to_openssh(ppk, directory / f"{algorithm}.openssh")))
    return made


def read(path: Path, passphrase: str | None = None) -> asyncssh.SSHKey:
    return import_ppk(path.read_bytes(), passphrase)


def same_key(one: asyncssh.SSHKey, other: asyncssh.SSHKey) -> bool:
    return one.export_private_key("pkcs8-der") == other.export_private_key("pkcs8-der")


@pytest.mark.parametrize("algorithm", KEY_TYPES)
@pytest.mark.parametrize(("version", "encrypted"), FORMATS,
                         ids=[f"v{v}-{'encrypted' if e else 'plain'}" for v, e in FORMATS])
def test_a_puttygen_key_reads_as_the_same_key(keys, tmp_path, algorithm, version, encrypted):
    source, expected = keys[algorithm]
    passphrase = PASSPHRASE if encrypted else None
    ppk = to_ppk(source, tmp_path / "key.ppk", version=version, passphrase=passphrase,
                 passes=1)
    text = ppk.read_text()
    assert text.startswith(f"PuTTY-User-Key-File-{version}: {algorithm}\n")
    assert ("Encryption: aes256-cbc" in text) == encrypted
    assert ("Key-Derivation: Argon2id" in text) == (encrypted and version == 3)
    assert is_ppk(ppk.read_bytes())

    key = read(ppk, passphrase)

    assert key.get_algorithm() == algorithm
    assert same_key(key, expected)
    assert key.get_comment() == expected.get_comment()


def test_puttygens_default_argon2_cost(keys, tmp_path):
    """The others ask puttygen for one Argon2 pass to stay fast; this is what it writes by
    default (passes for a tenth of a second)."""
    source, expected = keys["ssh-ed25519"]
    ppk = to_ppk(source, tmp_path / "key.ppk", passphrase=PASSPHRASE)
    assert re.search(r"^Argon2-Memory: 8192\nArgon2-Passes: \d+$", ppk.read_text(), re.M)
    assert same_key(read(ppk, PASSPHRASE), expected)


@pytest.mark.parametrize("kdf", ["argon2i", "argon2d"])
def test_each_argon2_flavour(keys, tmp_path, kdf):
    source, expected = keys["ssh-ed25519"]
    ppk = to_ppk(source, tmp_path / "key.ppk", passphrase=PASSPHRASE, kdf=kdf, passes=1)
    assert f"Key-Derivation: {kdf.capitalize()}\n" in ppk.read_text()
    assert same_key(read(ppk, PASSPHRASE), expected)


@pytest.mark.parametrize("version", [3, 2])
def test_a_wrong_or_missing_passphrase_is_refused(keys, tmp_path, version):
    ppk = to_ppk(keys["ssh-ed25519"][0], tmp_path / "key.ppk", version=version,
                 passphrase=PASSPHRASE, passes=1)
    with pytest.raises(InvalidValueError, match=r"^wrong passphrase, or the file is corrupt"):
        read(ppk, "correct horse")
    with pytest.raises(InvalidValueError, match=r"^the key is encrypted: set "
                                                r"privatekeyPassphrase$"):
        read(ppk)


def test_a_passphrase_for_an_unencrypted_key_is_not_needed(keys, tmp_path):
    ppk = to_ppk(keys["ssh-ed25519"][0], tmp_path / "key.ppk")
    assert same_key(read(ppk, "anything"), keys["ssh-ed25519"][1])


def edited(path: Path, pattern: str,
           replacement: str | Callable[[re.Match[str]], str]) -> bytes:
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
    assert count == 1, pattern
    return text.encode()


def other_first_digit(match: re.Match[str]) -> str:
    """The MAC with its first digit changed, always (a fixed digit would leave one key in 16
    as it was: the keys are made anew each run)."""
    return "Private-MAC: " + ("1" if match.group(0).endswith("0") else "0")


@pytest.mark.parametrize(("pattern", "replacement", "problem"), [
    (r"^Encryption: aes256-cbc$", "Encryption: aes128-ctr",
     "unknown cipher 'aes128-ctr' (PPK files use none or aes256-cbc)"),
    (r"^PuTTY-User-Key-File-3", "PuTTY-User-Key-File-4",
     "PPK format '4' is not one ssftp reads (formats 2 and 3; PuTTYgen writes both)"),
    (r"^PuTTY-User-Key-File-3", "PuTTY-User-Key-File-1", "PPK format '1' is not one"),
    (r"^Key-Derivation: Argon2id$", "Key-Derivation: scrypt", "unknown Key-Derivation 'scrypt'"),
    (r"^Argon2-Memory: \d+$", "Argon2-Memory: 99999999999",
     "Argon2-Memory '99999999999' is not a number from 1 to 1048576"),
    (r"^Argon2-Salt: \w+$", "Argon2-Salt: xyz", "Argon2-Salt is not hexadecimal"),
    (r"^Private-MAC: \w", "Private-MAC: z", "Private-MAC is not hexadecimal"),
    (r"^Private-MAC: \w", other_first_digit, "wrong passphrase, or the file is corrupt"),
    (r"^Comment: .*$", "Comment: edited", "wrong passphrase, or the file is corrupt"),
    (r"^Public-Lines: 6$", "Public-Lines: 5", "expected a Key-Derivation line, found '"),
    (r"^Public-Lines: 6$", "Public-Lines: 7", "the public key lines are not base64"),
    (r"^Public-Lines: 6$", "Public-Lines: 0", "Public-Lines '0' is not a number from 1 to"),
    (r"^Private-Lines: \d+$", "Private-Lines: 99", "the file ends inside its private key lines"),
    (r"^Comment: ", "Note: ", "expected a Comment line, found 'Note' at line 3"),
])
def test_a_damaged_encrypted_file_says_what_is_wrong(keys, tmp_path, pattern, replacement,
                                                     problem):
    ppk = to_ppk(keys["ssh-rsa"][0], tmp_path / "key.ppk", passphrase=PASSPHRASE, passes=1)
    with pytest.raises(InvalidValueError) as caught:
        import_ppk(edited(ppk, pattern, replacement), PASSPHRASE)
    assert str(caught.value).startswith(problem)
    assert "\n" not in str(caught.value) and PASSPHRASE not in str(caught.value)


def test_a_damaged_unencrypted_file_is_corrupt(keys, tmp_path):
    ppk = to_ppk(keys["ssh-ed25519"][0], tmp_path / "key.ppk")
    with pytest.raises(InvalidValueError, match=r"^the file is corrupt \(its MAC does not "):
        import_ppk(edited(ppk, r"^Comment: .*$", "Comment: edited"), None)


def test_an_unsupported_key_type_is_named(tmp_path):
    ppk = puttygen_key("dsa", tmp_path / "dsa.ppk", 1024)
    with pytest.raises(InvalidValueError, match="^key type ssh-dss is not supported "
                                                r"\(ssftp reads ssh-ed25519, "):
        read(ppk)


@pytest.mark.parametrize(("version", "passphrase"), [(3, PASSPHRASE), (3, None), (2, None)])
def test_a_file_cut_anywhere_is_refused_in_one_line(keys, tmp_path, version, passphrase):
    """Every prefix of the file, and every seventh byte changed: an
    InvalidValueError each time, never a parse error of another kind or a usable key."""
    ppk = to_ppk(keys["ecdsa-sha2-nistp256"][0], tmp_path / "key.ppk", version=version,
                 passphrase=passphrase, passes=1)
    data = ppk.read_bytes()
    damaged = [data[:end] for end in range(len(data) - 1)]
    # (B for a hex digit b would be no change: hex is read in either case.)
    damaged += [data[:at] + (b"C" if data[at:at + 1] in b"Bb" else b"B") + data[at + 1:]
                for at in range(0, len(data), 7) if data[at:at + 1] != b"\n"]
    for variant in damaged:
        if variant.rstrip() == data.rstrip():
            continue
        with pytest.raises(InvalidValueError) as caught:
            import_ppk(variant, passphrase)
        assert "\n" not in str(caught.value)


def test_other_files_are_not_ppk():
    assert not is_ppk(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(InvalidValueError, match=r"^not a PuTTY key file$"):
        import_ppk(b"PuTTY", None)
