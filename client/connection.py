"""Connecting to a downloader's or uploader's remote SFTP server, and trusting it.

This is where asyncssh's connection errors become ssftp's: code above ``open_sftp`` sees only
:class:`~ssftp.errors.TransferError`. Failures are sorted into two kinds, because only one is
worth retrying:
``RemoteUnavailableError`` (refused, timed out, connection lost) is retried with backoff;
``RemoteRefusedError`` (host key not trusted, login refused, unusable private key or
known_hosts file) fails the run at once with a message saying what to fix.

Host keys: the entry's ``knownHosts`` file, else ``system/known_hosts``, plus a pinned
``hostKeyFingerprint`` if set. An unknown key is refused, and the message shows the key's
fingerprint so an operator can check it out of band and pin it. Only
``insecureIgnoreHostKey: true`` skips the check.

A server holds a key of each of several types and shows one per handshake, the first type the
client prefers. A pinned fingerprint may be of any of them (an operator pins what
``ssh-keyscan`` or ssftp's banner printed first): when the key shown is not the pinned one,
each other key type is asked for in a handshake of its own, and the one that shows the pinned
key is used. The refusal names every key the server showed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from client.ppk import import_ppk, is_ppk
from ssftp.config.schema import Downloader, Uploader
from ssftp.errors import InvalidValueError, RemoteRefusedError, RemoteUnavailableError
from ssftp.logs import APP, log_event

logger = logging.getLogger(APP)

RemoteEntry = Downloader | Uploader
# A key file is a few KiB (a 16384-bit RSA key in PPK under 20): reading stops past this.
MAX_KEY_FILE_BYTES = 1024 * 1024


# What asyncssh raises when a session dies mid-transfer (not a per-file SFTP error).
CONNECTION_LOST = (asyncssh.DisconnectError, asyncssh.SFTPConnectionLost, BrokenPipeError,
                   ConnectionResetError)


def system_path(system: Path, value: str) -> Path:
    """Relative key and known_hosts paths are under the data root's ``system/``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else system / path


def where(entry: RemoteEntry) -> str:
    return f"{entry.username}@{entry.host}:{entry.port}"


def load_client_key(entry: RemoteEntry, system: Path) -> asyncssh.SSHKey | None:
    """The entry's private key: OpenSSH, PEM or PuTTY's PPK (formats 2 and 3), encrypted ones
    with the passphrase."""
    if not entry.private_key_path:
        return None
    path = system_path(system, entry.private_key_path)
    passphrase = (entry.private_key_passphrase.get_secret_value()
                  if entry.private_key_passphrase else None)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise RemoteRefusedError(f"{entry.name}: private key {path}: {exc.strerror}") from None
    try:
        if len(data) > MAX_KEY_FILE_BYTES:
            raise InvalidValueError(f"larger than any key file ({MAX_KEY_FILE_BYTES} bytes)")
        if is_ppk(data):
            return import_ppk(data, passphrase)
        return asyncssh.import_private_key(data, passphrase)
    except InvalidValueError as exc:
        raise RemoteRefusedError(
            f"{entry.name}: private key {path} cannot be used: {exc}") from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        hint = (" (encrypted: set privatekeyPassphrase)" if "passphrase" in str(exc).lower()
                and passphrase is None else "")
        raise RemoteRefusedError(
            f"{entry.name}: private key {path} cannot be used: {exc}{hint}") from None


@dataclass(frozen=True)
class FileIssue:
    """A file an entry names that its runs could not use: ``setting`` is its key in
    ssftp.yaml; a ``missing`` file may yet be put there, one that exists is wrong now."""

    setting: str
    message: str
    missing: bool


def file_issues(entry: RemoteEntry, system: Path) -> list[FileIssue]:
    """The entry's private key and known_hosts file, loaded as its runs load them, so that
    ``ssftp check-config`` tells of a key it cannot read or decrypt before any run fails on
    it."""
    issues = []
    key_setting = _setting(entry, "private_key_path")
    if entry.private_key_path:
        path = system_path(system, entry.private_key_path)
        try:
            if path.exists():
                load_client_key(entry, system)
            else:
                issues.append(FileIssue(key_setting, f"{entry.name}: private key {path} does "
                                        "not exist: every run fails until it does", True))
        except RemoteRefusedError as exc:
            issues.append(FileIssue(key_setting, str(exc), False))
    if not entry.insecure_ignore_host_key:
        known_hosts = system_path(system, entry.known_hosts or "known_hosts")
        setting = _setting(entry, "known_hosts")
        try:
            if known_hosts.exists():
                HostKeyPolicy.for_entry(entry, system).known_hosts_arg()
            elif entry.known_hosts:
                issues.append(FileIssue(setting, f"{entry.name}: knownHosts file {known_hosts} "
                                        "does not exist: every run fails until it does", True))
        except RemoteRefusedError as exc:
            issues.append(FileIssue(setting, f"{entry.name}: {exc}", False))
    return issues


def _setting(entry: RemoteEntry, field: str) -> str:
    """A field's key in ssftp.yaml (uploaders spell the key path ``privatekeyPath``)."""
    return type(entry).model_fields[field].alias or field


@dataclass(frozen=True)
class HostKeyPolicy:
    known_hosts: Path | None
    fingerprint: str | None
    insecure: bool

    @classmethod
    def for_entry(cls, entry: RemoteEntry, system: Path) -> HostKeyPolicy:
        if entry.insecure_ignore_host_key:
            return cls(None, None, True)
        configured = entry.known_hosts
        known_hosts = system_path(system, configured) if configured else system / "known_hosts"
        if configured and not known_hosts.is_file():
            raise RemoteRefusedError(f"{entry.name}: knownHosts file {known_hosts} does not exist")
        return cls(known_hosts if known_hosts.is_file() else None, entry.host_key_fingerprint,
                   False)

    def known_hosts_arg(self) -> object:
        """asyncssh's ``known_hosts``: None disables checking; an empty triple trusts no key
        (an empty string would make asyncssh read ~/.ssh/known_hosts instead)."""
        if self.insecure:
            return None
        if self.known_hosts is None:
            return ([], [], [])
        try:
            return asyncssh.read_known_hosts(str(self.known_hosts))
        except (OSError, ValueError) as exc:
            raise RemoteRefusedError(
                f"known_hosts file {self.known_hosts} cannot be read: {exc}") from None

    def describe(self) -> str:
        sources = [f"known_hosts {self.known_hosts}" if self.known_hosts
                   else "known_hosts (none: system/known_hosts does not exist)"]
        if self.fingerprint:
            sources.append(f"hostKeyFingerprint {self.fingerprint}")
        return " or ".join(sources)


# The host key algorithms to ask for, by the key type they show, when a pinned fingerprint
# was not the key shown first; OpenSSH's key types, in OpenSSH's order of preference.
KEY_TYPE_ALGORITHMS = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}


class _PinnedKeyClient(asyncssh.SSHClient):
    """Accepts a host key that matches the pinned fingerprint, and remembers every key it was
    shown (key type: fingerprint) so a refusal can name them, and a retry ask for another."""

    def __init__(self, fingerprint: str | None) -> None:
        self.fingerprint = fingerprint
        self.shown: dict[str, str] = {}

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.shown[key.get_algorithm()] = key.get_fingerprint("sha256")
        return self.fingerprint is not None and key.get_fingerprint("sha256") == self.fingerprint

    def presented(self) -> str:
        return ", ".join(f"{kind} {fingerprint}" for kind, fingerprint in self.shown.items())


async def _connect(entry: RemoteEntry, key: asyncssh.SSHKey | None, policy: HostKeyPolicy,
                   client: _PinnedKeyClient, timeout: float,
                   ) -> asyncssh.SSHClientConnection:
    """The first handshake with the client's preferred host key algorithms; when it showed a
    key that is not the pinned one, one handshake per other key type until one shows it
    (a server without that type ends the key exchange, or the connection: the next type is
    asked)."""
    options = {"username": entry.username,
               "password": entry.password.get_secret_value() if entry.password else None,
               "client_keys": [key] if key else (), "agent_path": None,
               "known_hosts": policy.known_hosts_arg(), "client_factory": lambda: client,
               "connect_timeout": timeout, "login_timeout": timeout, "keepalive_interval": 30}
    try:
        return await asyncssh.connect(entry.host, entry.port, **options)
    except asyncssh.HostKeyNotVerifiable:
        if policy.fingerprint is None:
            raise
    for kind, algorithms in KEY_TYPE_ALGORITHMS.items():
        if kind in client.shown:
            continue
        try:
            connection = await asyncssh.connect(entry.host, entry.port,
                                                server_host_key_algs=list(algorithms),
                                                **options)
        except (asyncssh.Error, OSError):
            continue
        log_event(logger, "the pinned host key is the remote server's key of another type",
                  entry=entry.name, remote=where(entry), key_type=kind)
        return connection
    raise asyncssh.HostKeyNotVerifiable("no host key of the server has the pinned fingerprint")


@asynccontextmanager
async def open_sftp(entry: RemoteEntry, system: Path,
                    timeout: float) -> AsyncIterator[asyncssh.SFTPClient]:
    """An SFTP session with the entry's server, closed on exit; errors are TransferErrors."""
    policy = HostKeyPolicy.for_entry(entry, system)
    key = load_client_key(entry, system)
    if policy.insecure:
        log_event(logger, "host key check is off for this remote server "
                  "(insecureIgnoreHostKey: true)", logging.WARNING, entry=entry.name,
                  remote=where(entry))
    client = _PinnedKeyClient(policy.fingerprint)
    try:
        connection = await _connect(entry, key, policy, client, timeout)
    except asyncssh.HostKeyNotVerifiable:
        presented = client.presented() or "a key not in the trusted list"
        keys, are = ("host key", "is") if len(client.shown) < 2 else ("host keys", "are")
        raise RemoteRefusedError(
            f"{entry.name}: the {keys} of {entry.host}:{entry.port} ({presented}) {are} not "
            f"trusted by {policy.describe()}. If this is the right server (check the key out "
            "of band), add it to knownHosts or set hostKeyFingerprint") from None
    except asyncssh.PermissionDenied as exc:
        raise RemoteRefusedError(
            f"{entry.name}: {where(entry)} refused the login: {exc.reason}") from None
    except (OSError, asyncssh.Error) as exc:  # TimeoutError is an OSError
        raise RemoteUnavailableError(
            f"{entry.name}: cannot reach {entry.host}:{entry.port}: {reason(exc)}") from None
    try:
        # Names are bytes on the wire: undecodable ones become surrogates, as Python's own
        # file names do, so a remote name in Latin-1 is listed, fetched and stored under its
        # own bytes (strict UTF-8, asyncssh's default, failed the whole listing).
        async with connection, connection.start_sftp_client(
                path_errors="surrogateescape") as sftp:
            yield sftp
    except CONNECTION_LOST as exc:
        raise RemoteUnavailableError(
            f"{entry.name}: lost the connection to {entry.host}:{entry.port}: "
            f"{reason(exc)}") from None


def reason(exc: BaseException) -> str:
    """What went wrong, in the words of the server or the OS."""
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
