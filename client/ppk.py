"""PuTTY private key files (``.ppk``, formats 2 and 3) as asyncssh keys.

sSFTP's README says a downloader's key "supports Putty or PEM RSA private key file", and
PuTTYgen is what a Windows operator makes keys with; asyncssh (and paramiko) read OpenSSH and
PEM only. PyPI's one PPK converter (puttykeys) was last released in 2021 and is not kept, so
this module reads the format as PuTTY's manual (appendix C) describes it:

- text lines ``PuTTY-User-Key-File-<version>: <algorithm>``, ``Encryption`` (``none`` or
  ``aes256-cbc``), ``Comment``, ``Public-Lines`` and that many lines of base64 (the SSH wire
  public key), for format 3 and encrypted the Argon2 parameters (``Key-Derivation``,
  ``Argon2-Memory``, ``-Passes``, ``-Parallelism``, ``-Salt``), ``Private-Lines`` and base64
  (the key type's private fields, encrypted and padded to the cipher block), ``Private-MAC``;
- format 2 derives the AES key from SHA-1 of the passphrase (IV zero) and MACs with HMAC-SHA1
  under SHA-1 of a fixed string and the passphrase; format 3 takes the AES key, IV and MAC key
  from Argon2 over the passphrase (80 bytes) and MACs with HMAC-SHA256 (an empty MAC key when
  unencrypted);
- the MAC covers the algorithm, encryption, comment, public blob and decrypted private blob, so
  a wrong passphrase and a corrupt or edited file are both a MAC mismatch, told apart only by
  whether the file is encrypted.

The key's fields are then laid out as an unencrypted OpenSSH private key (OpenSSH's
PROTOCOL.key), which asyncssh imports like any other; the imported key must show the file's own
public key. Every failure is an :class:`~ssftp.errors.InvalidValueError` whose message is one
line without the passphrase.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh
from argon2.exceptions import HashingError
from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ssftp.errors import InvalidValueError

MAGIC = b"PuTTY-User-Key-File-"
VERSIONS = (2, 3)
CIPHERS = ("none", "aes256-cbc")
KEY_DERIVATIONS = {"Argon2id": Type.ID, "Argon2i": Type.I, "Argon2d": Type.D}
# Bounds on what a file may ask for: enough for any key PuTTYgen writes (a 16384-bit RSA key
# is under 50 lines; PuTTYgen's Argon2 default is 8 MiB), so a broken file cannot make
# ssftp allocate gigabytes or hash for hours.
MAX_LINES = 1000
MAX_ARGON2_KIB = 1024 * 1024
MAX_ARGON2_PASSES = 100_000
MAX_ARGON2_PARALLELISM = 64
AES_BLOCK = 16


def is_ppk(data: bytes) -> bool:
    """Whether ``data`` is a PuTTY key file (of any format version)."""
    return data.startswith(MAGIC)


def import_ppk(data: bytes, passphrase: str | None) -> asyncssh.SSHKey:
    """The private key in a PPK file; ``passphrase`` for an encrypted one."""
    ppk = _parse(data)
    private = _decrypted_private(ppk, passphrase)
    build = _OPENSSH_FIELDS.get(ppk.algorithm)
    if build is None:
        raise InvalidValueError(f"key type {ppk.algorithm} is not supported (ssftp reads "
                                f"{', '.join(_OPENSSH_FIELDS)})")
    fields = build(_Wire(ppk.public, "public key"), _Wire(private, "private key"))
    try:
        key = asyncssh.import_private_key(_openssh_pem(ppk.public, fields, ppk.comment))
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InvalidValueError(f"the {ppk.algorithm} key inside cannot be used: {exc}") from None
    if key.public_data != ppk.public:
        raise InvalidValueError("the private key does not match the file's public key")
    return key


@dataclass(frozen=True)
class _Ppk:
    """A PPK file's fields, as read (the private blob still encrypted)."""

    version: int
    algorithm: str
    encryption: str
    comment: bytes
    public: bytes
    argon2: dict[str, str]
    private: bytes
    mac: bytes


class _Lines:
    """The file's lines in order, each read as ``Name: value`` where the format wants it."""

    def __init__(self, data: bytes) -> None:
        self.lines = re.split(rb"\r\n|\r|\n", data)
        self.next = 0

    def field(self, name: str) -> bytes:
        if self.next >= len(self.lines):
            raise InvalidValueError(f"the file ends before its {name} line (truncated?)")
        line = self.lines[self.next]
        label, sep, value = line.partition(b": ")
        if not sep or label != name.encode():
            shown = label.decode("ascii", "replace")[:40]
            raise InvalidValueError(f"expected a {name} line, found {shown!r} at line "
                                    f"{self.next + 1}")
        self.next += 1
        return value

    def text(self, name: str) -> str:
        try:
            return self.field(name).decode("ascii")
        except UnicodeDecodeError:
            raise InvalidValueError(f"{name} is not ASCII") from None

    def number(self, name: str, most: int) -> int:
        value = self.text(name)
        if not value.isdigit() or not 0 < int(value) <= most:
            raise InvalidValueError(f"{name} {value[:20]!r} is not a number from 1 to {most}")
        return int(value)

    def base64_block(self, name: str) -> bytes:
        """``<name>-Lines: N`` and the N lines of base64 after it, decoded."""
        count = self.number(f"{name}-Lines", MAX_LINES)
        block = self.lines[self.next:self.next + count]
        if len(block) < count:
            raise InvalidValueError(f"the file ends inside its {name.lower()} key lines "
                                    "(truncated?)")
        self.next += count
        try:
            return base64.b64decode(b"".join(block), validate=True)
        except binascii.Error:
            raise InvalidValueError(f"the {name.lower()} key lines are not base64") from None


def _parse(data: bytes) -> _Ppk:
    lines = _Lines(data)
    first = lines.lines[0]
    if not first.startswith(MAGIC):
        raise InvalidValueError("not a PuTTY key file")
    version_text, sep, algorithm = first[len(MAGIC):].partition(b": ")
    version = int(version_text) if version_text.isdigit() else 0
    if not sep or version not in VERSIONS:
        raise InvalidValueError(f"PPK format {version_text.decode('ascii', 'replace')[:10]!r} "
                                f"is not one ssftp reads (formats {VERSIONS[0]} and "
                                f"{VERSIONS[-1]}; PuTTYgen writes both)")
    lines.next = 1
    encryption = lines.text("Encryption")
    if encryption not in CIPHERS:
        raise InvalidValueError(f"unknown cipher {encryption[:40]!r} (PPK files use "
                                f"{' or '.join(CIPHERS)})")
    comment = lines.field("Comment")
    public = lines.base64_block("Public")
    argon2: dict[str, str] = {}
    if version == 3 and encryption != "none":
        argon2 = {name: lines.text(name) for name in (
            "Key-Derivation", "Argon2-Memory", "Argon2-Passes", "Argon2-Parallelism",
            "Argon2-Salt")}
    private = lines.base64_block("Private")
    mac_text = lines.text("Private-MAC")
    try:
        mac = bytes.fromhex(mac_text)
    except ValueError:
        raise InvalidValueError("Private-MAC is not hexadecimal") from None
    return _Ppk(version, algorithm.decode("ascii", "replace"), encryption, comment, public,
                argon2, private, mac)


def _decrypted_private(ppk: _Ppk, passphrase: str | None) -> bytes:
    """The private blob, decrypted and its MAC checked."""
    encrypted = ppk.encryption != "none"
    if encrypted and passphrase is None:
        raise InvalidValueError("the key is encrypted: set privatekeyPassphrase")
    secret = (passphrase or "").encode() if encrypted else b""
    if ppk.version == 2:
        cipher_key = (hashlib.sha1(b"\0\0\0\0" + secret).digest()
                      + hashlib.sha1(b"\0\0\0\1" + secret).digest())[:32]
        iv = bytes(AES_BLOCK)
        mac_key = hashlib.sha1(b"putty-private-key-file-mac-key" + secret).digest()
        digest = "sha1"
    else:
        cipher_key, iv, mac_key = _argon2_keys(ppk.argon2, secret) if encrypted else (b"",) * 3
        digest = "sha256"
    private = ppk.private
    if encrypted:
        if not private or len(private) % AES_BLOCK:
            raise InvalidValueError("the private key lines are not whole AES blocks "
                                    "(truncated?)")
        decryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).decryptor()
        private = decryptor.update(private) + decryptor.finalize()
    covered = b"".join(_string(part) for part in (
        ppk.algorithm.encode(), ppk.encryption.encode(), ppk.comment, ppk.public, private))
    if not hmac.compare_digest(hmac.new(mac_key, covered, digest).digest(), ppk.mac):
        raise InvalidValueError("wrong passphrase, or the file is corrupt (its MAC does not "
                                "match)" if encrypted else
                                "the file is corrupt (its MAC does not match)")
    return private


def _argon2_keys(parameters: dict[str, str], secret: bytes) -> tuple[bytes, bytes, bytes]:
    """Format 3's AES key, IV and MAC key, from Argon2 over the passphrase."""
    flavour = KEY_DERIVATIONS.get(parameters["Key-Derivation"])
    if flavour is None:
        raise InvalidValueError(f"unknown Key-Derivation {parameters['Key-Derivation'][:40]!r}")
    bounds = {"Argon2-Memory": MAX_ARGON2_KIB, "Argon2-Passes": MAX_ARGON2_PASSES,
              "Argon2-Parallelism": MAX_ARGON2_PARALLELISM}
    for name, most in bounds.items():
        value = parameters[name]
        if not value.isdigit() or not 0 < int(value) <= most:
            raise InvalidValueError(f"{name} {value[:20]!r} is not a number from 1 to {most}")
    try:
        salt = bytes.fromhex(parameters["Argon2-Salt"])
        material = hash_secret_raw(
            secret, salt, time_cost=int(parameters["Argon2-Passes"]),
            memory_cost=int(parameters["Argon2-Memory"]),
            parallelism=int(parameters["Argon2-Parallelism"]), hash_len=32 + AES_BLOCK + 32,
            type=flavour, version=ARGON2_VERSION)
    except ValueError:
        raise InvalidValueError("Argon2-Salt is not hexadecimal") from None
    except HashingError as exc:
        raise InvalidValueError(f"the Argon2 parameters cannot be used: {exc}") from None
    return material[:32], material[32:32 + AES_BLOCK], material[32 + AES_BLOCK:]


class _Wire:
    """SSH wire fields (RFC 4251) read in order from one of the file's blobs."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.what = what
        self.offset = 0

    def string(self) -> bytes:
        if self.offset + 4 > len(self.data):
            raise InvalidValueError(f"the {self.what} ends early (truncated?)")
        (length,) = struct.unpack_from(">I", self.data, self.offset)
        start = self.offset + 4
        if start + length > len(self.data):
            raise InvalidValueError(f"the {self.what} ends early (truncated?)")
        self.offset = start + length
        return self.data[start:self.offset]

    def strings(self, count: int) -> list[bytes]:
        return [self.string() for _ in range(count)]


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _plain_fields(public_count: int, private_order: tuple[int, ...],
                  ) -> Callable[[_Wire, _Wire], bytes]:
    """For key types whose OpenSSH fields are PPK's public fields (after the type name) and
    private fields as they are (mpints, strings), in another order: ``private_order`` indexes
    public then private fields."""
    def build(public: _Wire, private: _Wire) -> bytes:
        fields = public.strings(1 + public_count)[1:]
        fields += private.strings(len(private_order) - public_count)
        return b"".join(_string(fields[index]) for index in private_order)
    return build


def _eddsa_fields(size: int) -> Callable[[_Wire, _Wire], bytes]:
    """EdDSA: PPK keeps the secret's bytes as a little-endian number (so its high zero bytes
    may be left out); OpenSSH keeps the public key, then the secret followed by it."""
    def build(public: _Wire, private: _Wire) -> bytes:
        point = public.strings(2)[1]
        secret = private.string()
        if len(point) != size or len(secret.rstrip(b"\0")) > size:
            raise InvalidValueError("the EdDSA key's fields are not of its type's size")
        return _string(point) + _string(secret[:size].ljust(size, b"\0") + point)
    return build


# Per key type: the OpenSSH private fields after the type name, from PPK's blobs.
_OPENSSH_FIELDS: dict[str, Callable[[_Wire, _Wire], bytes]] = {
    "ssh-ed25519": _eddsa_fields(32),
    "ssh-ed448": _eddsa_fields(57),
    # public e, n; private d, p, q, iqmp -> OpenSSH n, e, d, iqmp, p, q
    "ssh-rsa": _plain_fields(2, (1, 0, 2, 5, 3, 4)),
    # public curve name, Q; private d -> the same order
    **{f"ecdsa-sha2-{curve}": _plain_fields(2, (0, 1, 2))
       for curve in ("nistp256", "nistp384", "nistp521")},
}


def _openssh_pem(public: bytes, fields: bytes, comment: bytes) -> bytes:
    """An unencrypted OpenSSH private key holding one key: its public blob, then its private
    fields (after the key type), comment and padding, behind two equal check words."""
    algorithm = _Wire(public, "public key").string()
    section = b"\0\0\0\0" * 2 + _string(algorithm) + fields + _string(comment)
    section += bytes(range(1, 1 + (-len(section)) % 8))
    body = (b"openssh-key-v1\0" + _string(b"none") + _string(b"none") + _string(b"")
            + struct.pack(">I", 1) + _string(public) + _string(section))
    text = base64.b64encode(body)
    lines = [text[start:start + 70] for start in range(0, len(text), 70)]
    return b"\n".join([b"-----BEGIN OPENSSH PRIVATE KEY-----", *lines,
                       b"-----END OPENSSH PRIVATE KEY-----", b""])
