"""The shape of ssftp.yaml: sSFTP's camelCase keys, unchanged, plus our extensions.

Unknown keys are refused (a typo must not silently drop a setting), secrets are ``SecretStr`` so
they never show up in a repr or a log line, and defaults err on the safe side (scanning on,
host keys checked). Checks that span several entries (duplicate users, overlapping directories)
live in :mod:`ssftp.config.rules`, so each error can name the exact entry.
"""

from __future__ import annotations

import re
import socket
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictFloat,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ssftp.addresses import (
    AddressFilter,
    ClamdAddress,
    IcapAddress,
    Network,
    check_http_url,
    parse_listen,
    parse_network,
)
from ssftp.layout import RESERVED_PREFIX, DataLayout, is_reserved_name
from ssftp.permissions import parse_permission_names

# How a file reaches clamd: see ssftp.scan.clamd (auto: by descriptor, or streamed to a
# clamd on another machine).
ScanMode = Literal["auto", "path", "fd", "stream"]

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, hide_input_in_errors=True
    )


def _networks(value: list[str]) -> list[str]:
    """Each entry an IP address or CIDR network (ssftp.addresses.parse_network names a bad
    one)."""
    for entry in value:
        parse_network(entry)
    return value


Networks = Annotated[list[str], AfterValidator(_networks)]


class AddressLists(Model):
    """Our extension, SFTPGo's `allowed_ip`/`denied_ip`: which client addresses may connect
    (in `limits`: refused before the key exchange with `address not allowed`) or log in to an
    account (an account's: the login fails as a wrong password does, logged with `reason:
    address not allowed for account`)."""

    allowed_ips: Networks = Field(default_factory=list, description=(
        "The client addresses admitted; empty: any. In `limits`, another address is "
        "disconnected before the key exchange (`address not allowed`); an account's fails "
        "its login as a wrong password does (logged: `address not allowed for account`). "
        "Entries are IPv4 or IPv6 addresses or "
        "CIDR networks (`192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`). Behind a load balancer "
        "with `limits.proxyProtocol`, the client address is the one its PROXY header "
        "carries."))
    denied_ips: Networks = Field(default_factory=list, description=(
        "The client addresses refused, even when `allowedIps` holds them too (denied wins)."))

    @cached_property
    def address_filter(self) -> AddressFilter:
        return AddressFilter.of(self.allowed_ips, self.denied_ips)


def _relative_directory(value: str) -> str:
    """A directory below an area: no ``..``, not absolute, no empty or odd components."""
    if value == "*":
        return value
    if not value or value.startswith("/") or "\\" in value or "\x00" in value:
        raise ValueError("must be a relative directory name (no leading '/', no '\\')")
    parts = value.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("must not contain '..', '.' or empty path components")
    if any(is_reserved_name(part) for part in parts):
        raise ValueError(f"names starting with {RESERVED_PREFIX!r} are reserved for ssftp")
    return "/".join(parts)


Directory = Annotated[str, AfterValidator(_relative_directory)]


def _username(value: str) -> str:
    if not _USERNAME.match(value):
        raise ValueError(
            "must be 1-64 characters of letters, digits, '.', '_', '@', '-', starting with a "
            "letter or digit"
        )
    return value


def _permission_names(value: list[str] | None) -> list[str] | None:
    if value is not None:
        parse_permission_names(value)
    return value


class Auth(Model):
    username: Annotated[str, AfterValidator(_username)] = Field(description=(
        "The login name: 1 to 64 letters, digits, `.`, `_`, `@` or `-`, starting with a letter "
        "or a digit, and used by one account only. sSFTP's key."))
    password: SecretStr | None = Field(default=None, description=(
        "The account's password: a bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2id hash, as "
        "`ssftp hash-password` prints it, so the file never holds a password anyone can read. "
        "Plaintext still loads (sSFTP files have it), with a warning to store a hash instead. "
        "An account needs a password or a `publicKey`. sSFTP's key."))
    public_key: str | list[str] | None = Field(default=None, description=(
        "The OpenSSH public key the account logs in with, one line as in `authorized_keys`; or "
        "a list of them (our extension: a new key can be added before the old one is removed). "
        "A key that cannot be parsed is a warning and is ignored: it cannot log in, and the "
        "account's other credentials still work. sSFTP's key."))

    @property
    def public_keys(self) -> list[str]:
        if self.public_key is None:
            return []
        keys = [self.public_key] if isinstance(self.public_key, str) else self.public_key
        return [key for key in keys if key.strip()]

    @model_validator(mode="after")
    def _has_credential(self) -> Auth:
        has_password = self.password is not None and self.password.get_secret_value() != ""
        if not has_password and not self.public_keys:
            raise ValueError("an account needs a password or a publicKey")
        return self


def _name_pattern(value: str) -> str:
    """A shell pattern for one name (ssftp.file_patterns): fnmatch takes any text, so what is
    refused is what could never match a name."""
    if not value:
        raise ValueError("an empty pattern matches no name")
    if "/" in value or "\x00" in value:
        raise ValueError(f"{value!r}: a pattern matches a file's name, not its path, so it "
                         "cannot contain '/' (or NUL); give the directory its own patterns "
                         "under 'directories'")
    return value


NamePattern = Annotated[str, AfterValidator(_name_pattern)]


def _sub_directory(value: str) -> str:
    """A directory below the account's root, as the account sees it (``/reports`` or
    ``reports``), kept as ``reports``."""
    stripped = value.strip("/")
    if not stripped:
        raise ValueError("the account's root has its patterns in filePatterns.allowed and "
                         "filePatterns.denied, not under 'directories'")
    if stripped == "*":
        raise ValueError("'*' is not a directory; the account's own patterns apply to every "
                         "directory that has none of its own")
    return _relative_directory(stripped)


SubDirectory = Annotated[str, AfterValidator(_sub_directory)]


class NamePatterns(Model):
    """The name patterns of one directory of an account (see `filePatterns`)."""

    allowed: list[NamePattern] = Field(default_factory=list, description=(
        "Shell patterns (`*`, `?`, `[...]`), compared without letter case against a file's "
        "name (never its path): given, a file whose name matches none of them is refused. "
        "Empty: any name not denied. Directories are not held to them (`*.csv` would forbid "
        "every sub-directory)."))
    denied: list[NamePattern] = Field(default_factory=list, description=(
        "Shell patterns, compared without letter case against a name: a file or directory "
        "whose name matches one is refused, whatever `allowed` says (`*.exe`, `*.bat`)."))


class FilePatterns(NamePatterns):
    """Our extension, SFTPGo's ``filters.file_patterns``: which names an account's files may
    have, checked by the server before a byte is written ([Name patterns](server.md#name-patterns)).
    An upload (OPEN for writing) or a rename to a refused name, or a directory made with a
    denied name, is answered SSH_FX_PERMISSION_DENIED with the reason (``name refused by
    filePatterns: *.exe``) and logged as ``refused``; a download (OPEN for reading) of such a
    name is refused the same way, though listings still show it (SFTPGo's default deny policy).
    A client temp name is checked as the name it stands for (``x.exe.filepart`` as ``x.exe``).
    Files put in staging by other writers (downloaders, a share) are not checked."""

    directories: dict[SubDirectory, NamePatterns] = Field(default_factory=dict, description=(
        "Patterns of sub-directories of the account (`reports`, `/in/2024`: relative to the "
        "account's root, as the account sees it, letter case exact as on the disk). The "
        "patterns of the deepest directory listed that holds a name apply, in place of the "
        "account's own (not besides them): a directory listed with no patterns lifts the "
        "account's there. The account's own `allowed` and `denied` apply everywhere else."))

    @field_validator("directories", mode="before")
    @classmethod
    def _distinct(cls, value: object) -> object:
        """``/reports`` and ``reports/`` are one directory: given twice, which rules hold?"""
        if isinstance(value, dict):
            seen: dict[str, str] = {}
            for key in value:
                if isinstance(key, str):
                    normal = "/".join(part for part in key.split("/") if part)
                    if normal in seen:
                        raise ValueError(f"{key!r} is the same directory as {seen[normal]!r}")
                    seen[normal] = key
        return value


class Quota(Model):
    """Our extension, SFTPGo's per-user quota: how much an account may have in its area,
    counted exactly from the filesystem plus the uploads in flight ([Quotas](server.md#quotas)
    says how): every regular file under the account's root, hidden ones included (for a
    stagingDir account its uploads not yet scanned, its interrupted uploads kept for a resume
    and its uploads in progress). An upload that would pass it is refused with
    SSH_FX_FAILURE and the reason (`quota exceeded: 1.0 GiB of 1.0 GiB`), at the OPEN when that
    is already known, else at the WRITE that crosses it, and is never published; `df` in
    OpenSSH's sftp (`statvfs@openssh.com`) shows the quota, not the host's disk."""

    max_bytes: Annotated[int | None, Field(ge=1)] = Field(default=None, description=(
        "The bytes (file sizes, a plain integer: `1073741824` for 1 GiB) the account's area "
        "may hold. A WRITE that would take it beyond is refused, and so is an OPEN whose "
        "attributes announce a size beyond. Absent: no limit on bytes."))
    max_files: Annotated[int | None, Field(ge=1)] = Field(default=None, description=(
        "The files the account's area may hold; an upload in progress is one (its hidden "
        "temp file), a resume continues the one it resumes. The OPEN of one more is refused. "
        "Absent: no limit on files."))

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _plain_bytes(cls, value: object) -> object:
        """``1GiB`` would be refused as "not a valid integer": say what is wanted instead."""
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError(f"{value!r}: a number of bytes without a unit, such as 1073741824 "
                             "for 1 GiB")
        return value

    @model_validator(mode="after")
    def _limits_something(self) -> Quota:
        if self.max_bytes is None and self.max_files is None:
            raise ValueError("a quota needs maxBytes or maxFiles (or leave `quota` out)")
        return self


# Above this (16 GiB/s) a figure is a typo (bytes for KiB, an extra digit), not a limit.
_MAX_KIB_PER_SECOND = 1 << 24


class Bandwidth(Model):
    """Our extension, SFTPGo's `upload_bandwidth` and `download_bandwidth`: how fast an
    account's transfers may go, in all its sessions on one server process together
    ([Bandwidth](server.md#bandwidth)). Smooth: each request waits its turn at the rate (a
    token bucket), rather than bursts and pauses. On an account, each key given replaces
    `limits.bandwidth`'s (0: unlimited for this account), and a key left out keeps the
    default's. Each `ssftp serve` process applies the limit on its own: behind a balancer
    with N servers an account can reach N times it. A reload applies to each session's next
    OPEN."""

    upload_ki_bps: Annotated[int | None, Field(ge=0, le=_MAX_KIB_PER_SECOND)] = Field(
        default=None, description=(
            "KiB per second the account's uploads (WRITE requests) may bring in together; 0 "
            "or absent: unlimited (on an account: `limits.bandwidth`'s)."))
    download_ki_bps: Annotated[int | None, Field(ge=0, le=_MAX_KIB_PER_SECOND)] = Field(
        default=None, description=(
            "KiB per second the account's downloads (READ replies) may take out together; 0 "
            "or absent: unlimited (on an account: `limits.bandwidth`'s)."))


class AccountEntry(AddressLists):
    directory: Directory = Field(description=(
        "The account's directory below its area (`staging/` for stagingDir accounts, `clean/` "
        "for cleanDir accounts): its jail, shown to the account as `/`. Relative, without "
        "`..`, `.`, empty components, `\\` or names starting with `.ssftp-` (ssftp's own). "
        "Accounts of one kind may not share a directory or nest one in another, since they "
        "would see each other's files. `*` (cleanDir accounts only) is the whole area. "
        "sSFTP's key."))
    auth: Auth = Field(description="How the account logs in. sSFTP's key.")
    permissions: Annotated[list[str] | None, AfterValidator(_permission_names)] = Field(
        default=None, description=(
            "What the account may do, by SFTPGo's names: `list`, `download`, `upload`, "
            "`overwrite`, `delete`, `rename`, `create_dirs`, `chmod`, `chtimes`, or `*` for all "
            "(SFTPGo's `delete_files`, `delete_dirs`, `rename_files` and `rename_dirs` are "
            "taken too). Creating links and `chown` are never granted: a link could point out "
            "of the jail, and the data root is shared. Absent, each kind gets only what it "
            "needs: stagingDir accounts `list`, `upload`, `create_dirs` (plus renaming and "
            "removing their own uploads in progress, such as `*.filepart`, and renaming their "
            "upload of the last minute within its directory); cleanDir accounts "
            "`list`, `download`, and `delete` with `allowDelete`. Given, the list replaces "
            "these defaults, `allowDelete` included."))
    file_patterns: FilePatterns | None = Field(default=None, description=(
        "Which names the account's files may have (`denied: [\"*.exe\"]`), per account and "
        "per sub-directory, as SFTPGo's `file_patterns`: uploads, renames and directories "
        "with a refused name are refused before anything reaches the disk, and downloads of "
        "one are refused. Absent: any name (the server checks nothing)."))
    max_sessions: Annotated[int | None, Field(ge=1, le=10_000)] = Field(
        default=None, description=(
            "SFTP sessions (and exec channels) the account may have open at once, in all its "
            "connections to one server process; one more is refused with `too many sessions "
            "for <user> (N)`. Absent, only `limits` bound them (SFTPGo's `max_sessions`)."))
    quota: Quota | None = Field(default=None, description=(
        "How much the account may keep in its area: `{maxBytes, maxFiles}`, counted exactly "
        "([Quotas](server.md#quotas)). It bounds whatever the account can write there: a "
        "stagingDir account's uploads, and a cleanDir account's only when its `permissions` grant "
        "`upload` (by default it has none). A reload applies to the next OPEN. Absent: "
        "no quota, and the server counts nothing."))
    bandwidth: Bandwidth = Field(default_factory=Bandwidth, description=(
        "The account's own upload and download rates (`{uploadKiBps: 1024}`), each replacing "
        "`limits.bandwidth`'s; a key left out keeps it, and 0 makes the account unlimited."))


_MIME_PATTERN = re.compile(r"^[a-z0-9*][a-z0-9!#$&^_.+*-]*/[a-z0-9*][a-z0-9!#$&^_.+*-]*$")


def _file_types(value: list[str] | None) -> list[str] | None:
    """MIME types, with ``*`` wildcards (``text/*``); compared lower case, as libmagic names
    them."""
    for pattern in value or []:
        if not _MIME_PATTERN.match(pattern.lower()):
            raise ValueError(f"{pattern!r} is not a MIME type such as 'text/csv' or 'text/*'")
    return None if value is None else [pattern.lower() for pattern in value]


FileTypes = Annotated[list[str], AfterValidator(_file_types)]


class ContentRules(Model):
    """Our extension: what an owner's files may be, besides free of malware
    (:mod:`ssftp.scan.policy`)."""

    allow_encrypted: bool = Field(default=False, description=(
        "Lets encrypted archives and documents (a zip under a password, an encrypted PDF) "
        "through to `clean/`, marked `clean (encrypted, not inspected)` in the audit record "
        "and the verdict table: no scanner saw inside them. Off, they are unscannable and "
        "quarantined, since a password is the commonest way malware is sent past a scanner. "
        "Each owner that allows them is named in a warning at start and by `check-config`."))
    allowed_file_types: Annotated[list[str] | None, AfterValidator(_file_types)] = Field(
        default=None, description=(
            "MIME types (`text/*`, `application/pdf`) that files may have, judged from their "
            "content, not their name; any other type is blocked (quarantined, "
            "`ssftp.policy.filetype:<type>`). Absent, any type not denied. An archive is "
            "judged as one (`application/zip`), not by its members."))
    denied_file_types: FileTypes = Field(default_factory=list, description=(
        "MIME types (`application/x-dosexec`, `application/x-*executable`) that files may "
        "not have, judged from their content, besides `scanning.deniedFileTypes`; such a "
        "file is blocked."))


class StagingAccount(AccountEntry, ContentRules):
    @field_validator("directory")
    @classmethod
    def _no_wildcard(cls, value: str) -> str:
        if value == "*":
            raise ValueError("'*' is only allowed for cleanDir accounts")
        return value


class CleanAccount(AccountEntry):
    allow_delete: bool = Field(default=False, description=(
        "Adds `delete` to the account's default permissions, so a consumer can remove what it "
        "has fetched. Off: a consumer that only reads cannot take a file from the others. "
        "Ignored when `permissions` is given."))


class Users(Model):
    staging_dir: list[StagingAccount] = Field(default_factory=list, description=(
        "The partners' accounts: each uploads into `staging/<directory>`, and nothing it "
        "uploads is seen by anyone until ClamAV has passed it to `clean/<directory>`. "
        "sSFTP's key."))
    clean_dir: list[CleanAccount] = Field(default_factory=list, description=(
        "The consumers' accounts: each downloads from `clean/<directory>` (or all of `clean/` "
        "with `*`), where only files with a clean verdict are. sSFTP's key."))


class Webhook(Model):
    name: Literal["virusFound", "scanError", "released"] = Field(description=(
        "What the webhook is told about: `virusFound`, an infected file (found on upload, or "
        "by a rescan with newer signatures: then its `reason` is `rescan`); `scanError`, an "
        "unscannable file, or the first failed attempt of a file clamd could not scan (once "
        "per file, not per retry); `released`, a file an operator released from quarantine. "
        "sSFTP's key (`released` is ours)."))
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$"),
                   AfterValidator(check_http_url)] = Field(
        description="Where the JSON body is POSTed: an http:// or https:// URL with a host. "
                    "sSFTP's key.")
    secret: SecretStr | None = Field(default=None, description=(
        "Signs each body: the `X-Ssftp-Signature` header is `sha256=` and the HMAC-SHA256 of "
        "the body with this secret, so the receiver can tell the POST came from this gateway. "
        "Absent, bodies are not signed. Write it as `${NAME}` to keep it out of the file."))
    timeout: Annotated[float, Field(gt=0, le=300)] = Field(default=10.0, description=(
        "Seconds for a whole attempt (connect, send, read the answer to its end), not per "
        "read: a receiver that trickles its answer is cut off and the attempt failed. Ten "
        "seconds is ample for a receiver that works, and a dead one holds no delivery for "
        "longer."))
    retries: Annotated[int, Field(ge=0, le=20)] = Field(default=3, description=(
        "Attempts after a failed one, within one delivery. A notification still not delivered "
        "after them stays owed in the outbox and is sent again later (after 1 minute, "
        "doubling to 1 hour), so a receiver that is down for a while misses nothing."))
    retry_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(default=2.0, description=(
        "The first retry waits this long, each next one twice as long (2, 4 and 8 s with the "
        "defaults): a receiver that restarts is given a moment, not a burst."))


class LogDest(Model):
    kind: Literal["file", "stdout"] = Field(description=(
        "`file`: the logs (`ssftp.log`, `transfer.log`, `audit.log`, JSON lines) are also "
        "written to the directory `props.path`, besides the data root's `log/` (where a "
        "split deployment ships them; `ssftp status` reads the audit log there too). "
        "`stdout`: accepted for sSFTP files and changes nothing, as the logs always go to "
        "stdout. sSFTP's key."))
    props: dict[str, str] = Field(default_factory=dict, description=(
        "The destination's settings: `path`, the directory, required for `file`. sSFTP's key."))

    @model_validator(mode="after")
    def _file_has_path(self) -> LogDest:
        if self.kind == "file" and not self.props.get("path"):
            raise ValueError("a 'file' log destination needs props.path")
        return self


# A downloader or uploader without ``interval`` or ``cron`` runs this often (seconds).
DEFAULT_TRANSFER_INTERVAL = 60

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")


def _cron(value: str | None) -> str | None:
    if value is not None:
        try:
            CronSim(value, datetime.now())
        except CronSimError as exc:
            raise ValueError(f"not a cron expression ({exc}); e.g. '*/5 * * * *'") from None
    return value


def _fingerprint(value: str | None) -> str | None:
    if value is not None and not _FINGERPRINT.match(value.strip()):
        raise ValueError("expected an OpenSSH SHA256 fingerprint like 'SHA256:abc...' "
                         "(43 base64 characters), as `ssh-keygen -lf KEY.pub` prints it")
    return value.strip().rstrip("=") if value is not None else None


class RemoteEndpoint(Model):
    """What downloaders and uploaders share: where the remote server is and how it is trusted.

    Relative ``privateKeyPath`` and ``knownHosts`` paths are under the data root's ``system/``.
    Without ``knownHosts`` or ``hostKeyFingerprint``, ``system/known_hosts`` is the list of
    trusted host keys.
    """

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")] = (
        Field(description=(
            "Names the entry in its runs (`download NAME`, `upload NAME`), its schedule, the "
            "audit log and the events; unique across downloaders and uploaders. sSFTP's key.")))
    host: Annotated[str, Field(min_length=1)] = Field(
        description="The remote SFTP server's host name or address. sSFTP's key.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=22, description="The remote server's SSH port. sSFTP's key.")
    username: Annotated[str, Field(min_length=1)] = Field(
        description="The login name on the remote server. sSFTP's key.")
    password: SecretStr | None = Field(default=None, description=(
        "The password for the remote login, when the server takes one (a private key can be "
        "given too). Write it as `${NAME}` to keep it out of the file. sSFTP's key."))
    remote_directory: str | None = Field(default=None, description=(
        "The remote directory to download from or upload to, relative to the login directory; "
        "absent or empty: the login directory itself. sSFTP's key."))
    known_hosts: str | None = Field(default=None, description=(
        "An OpenSSH known_hosts file of the host keys to trust (`[host]:port` for ports other "
        "than 22), relative to `system/`; one named here that does not exist fails the run. "
        "Absent: `system/known_hosts`. Host keys are always checked: a key that neither this "
        "file nor `hostKeyFingerprint` trusts fails the run at once, naming its fingerprint, "
        "since an unchecked key lets anyone on the path pose as the server."))
    host_key_fingerprint: Annotated[str | None, AfterValidator(_fingerprint)] = Field(
        default=None, description=(
            "A host key to trust besides the known_hosts file's, pinned by its fingerprint as "
            "`ssh-keygen -lf KEY.pub` prints it (`SHA256:` and 43 base64 characters); of any "
            "key type the server has, which is then asked for."))
    insecure_ignore_host_key: bool = Field(default=False, description=(
        "Trusts any host key: the check is off, and every run warns about it. Only for a "
        "server whose key cannot be known, since anyone on the path could then pose as it."))
    interval: Annotated[int, Field(ge=1)] | None = Field(default=None, description=(
        f"Runs the entry every this many seconds. Without `interval` or `cron`, every "
        f"{DEFAULT_TRANSFER_INTERVAL} s. Not together with `cron`."))
    cron: Annotated[str | None, AfterValidator(_cron)] = Field(default=None, description=(
        "Runs the entry on this cron schedule instead, in UTC (`*/5 * * * *`). Not together "
        "with `interval`."))

    @model_validator(mode="after")
    def _one_schedule(self) -> RemoteEndpoint:
        if self.interval is not None and self.cron is not None:
            raise ValueError("set either interval or cron, not both")
        return self

    @field_validator("remote_directory")
    @classmethod
    def _remote_directory(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("a remote directory cannot contain NUL")
        return value

    @property
    def schedule(self) -> tuple[Literal["interval"], int] | tuple[Literal["cron"], str]:
        if self.cron is not None:
            return ("cron", self.cron)
        return ("interval", self.interval or DEFAULT_TRANSFER_INTERVAL)


class Downloader(RemoteEndpoint, ContentRules):
    private_key_path: str | None = Field(default=None, description=(
        "The client key to log in with (OpenSSH, PEM, or PuTTY's `.ppk` of format 2 or 3), "
        "relative to `system/`. `ssftp check-config` loads it. sSFTP's key (uploaders spell "
        "it `privatekeyPath`)."))
    private_key_passphrase: SecretStr | None = Field(
        default=None, alias="privatekeyPassphrase", description=(
            "The passphrase of an encrypted private key; write it as `${NAME}` to keep it out "
            "of the file. sSFTP's key."))
    local_staging_directory: Directory = Field(description=(
        "Where the files land: `staging/<this>/`, sub-directories kept, to be scanned like "
        "uploads. A directory, not `*`; no staging account or other downloader may share it "
        "or nest in it, or their files would mix and be credited to the wrong owner. "
        "sSFTP's key."))
    delete_remote_file_after_download: bool = Field(default=False, description=(
        "Deletes each remote file once its copy is complete in staging. Off, the remote files "
        "stay, and `system/transfers.sqlite` remembers each fetched file's size and mtime, so "
        "a file is fetched again only when it changes. sSFTP's key."))
    override_existing_file: bool = Field(default=True, description=(
        "Replaces a file of the same name already waiting in staging. `false` skips a file "
        "that is already in staging or in `clean/`, and only that file. sSFTP's key."))


class Uploader(RemoteEndpoint):
    private_key_path: str | None = Field(default=None, alias="privatekeyPath", description=(
        "The client key to log in with (OpenSSH, PEM, or PuTTY's `.ppk` of format 2 or 3), "
        "relative to `system/`. `ssftp check-config` loads it. sSFTP's key, spelt so "
        "(downloaders spell it `privateKeyPath`)."))
    private_key_passphrase: SecretStr | None = Field(
        default=None, alias="privatekeyPassphrase", description=(
            "The passphrase of an encrypted private key; write it as `${NAME}` to keep it out "
            "of the file. sSFTP's key."))
    local_directory_to_upload: Directory = Field(description=(
        "What to send: the clean files in `clean/<this>/`, sub-directories kept; `*`: all of "
        "`clean/`. A file sent moves to `uploadarchive/`. No two uploaders may share a "
        "directory or nest one in another: both would send the same files. sSFTP's key."))
    override_remote_existing_file: bool = Field(default=True, description=(
        "Replaces a remote file of the same name. `false`: such a file is skipped and stays "
        "in `clean/` for a later run. sSFTP's key."))


class TransferSettings(Model):
    """Our extension: how downloaders and uploaders retry and share remote servers."""

    retries: Annotated[int, Field(ge=0, le=20)] = Field(default=3, description=(
        "A run that cannot reach its server (a connection failure, not a refused login or host "
        "key, which fail at once) tries again this many times before it fails with the reason: "
        "a remote server that restarts does not cost a whole schedule interval."))
    retry_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(default=10.0, description=(
        "The first retry waits this long, each next one twice as long (10, 20 and 40 s with "
        "the defaults)."))
    max_connections_per_host: Annotated[int, Field(ge=1, le=100)] = Field(default=2, description=(
        "At most this many downloader and uploader runs talk to one host:port at once (a "
        "Prefect concurrency limit per host:port), so that several entries on one partner's "
        "server do not take its sessions from each other or from the partner."))
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0, description=(
            "Connect and log in within this many seconds, or the attempt fails and is "
            "retried: a server that does not answer must not hold a run."))


class DefenderSettings(Model):
    """Our extension: ban an address after too many failed logins."""

    max_failures: Annotated[int, Field(ge=1)] = Field(default=10, description=(
        "Failed logins from one address within `windowSeconds` that get it banned: more than "
        "a partner mistyping a password makes, few for a password guesser."))
    window_seconds: Annotated[float, Field(gt=0)] = Field(
        default=300.0, description="How far back failed logins are counted.")
    ban_seconds: Annotated[float, Field(ge=0)] = Field(default=900.0, description=(
        "How long a ban lasts: every login from the address fails meanwhile, even with the "
        "right credentials, and is logged as such. A quarter of an hour slows a guesser down "
        "without locking a partner out for long."))


class LimitsSettings(AddressLists):
    """Our extension: what one client may hold of the server, so that no account can take it
    from the others. A refusal is logged as `limit reached`: once per session; for refused
    connections at most once a minute per limit and address, and for refused requests once per
    connection, operation and reason, each followed by the number `suppressed` since the line
    before (a flood writes a few lines, not one each).

    On a hot reload, new limits apply to the next connection (per account, per address,
    logging in), to an established connection's next SFTP channel and to an established
    session's next OPEN or OPENDIR; what is already open or connected stays. The keys that
    say so are read at start only.
    """

    max_open_handles: Annotated[int, Field(ge=1, le=100_000)] = Field(default=512, description=(
        "Open files and directories of one SFTP session; beyond it an OPEN or OPENDIR fails "
        "with `too many open handles (512)`. Each holds a file descriptor, and the process has "
        "a fixed number of them for every session. 512 is far more than any real client keeps "
        "open (OpenSSH's sftp: a few; rclone: its transfers) and leaves a 20 000-descriptor "
        "server room for dozens of sessions at their limit."))
    max_sessions_per_connection: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10, description=(
            "SFTP channels of one connection, each with its own handles (OpenSSH's "
            "MaxSessions, 10)."))
    max_connections_per_account: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=20, description=(
            "Logged-in connections of one account: an account's parallel transfers (rclone's 4 "
            "to 8, a few scripts) fit."))
    max_connections_per_address: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=50, description=(
            "Connections from one address: more than one account's, since several partners "
            "may share one address behind NAT."))
    max_sessions_per_address: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=100, description=(
            "SFTP sessions (and exec channels) open from one address, in all its connections "
            "to one server process (each process counts its own); one more is refused with "
            "`too many sessions from <address> (100)`. 100 is two sessions for each of "
            "`maxConnectionsPerAddress`."))
    max_unauthenticated_connections: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64, description=(
            "Connections still logging in, in total (OpenSSH's MaxStartups): each costs a key "
            "exchange, and a flood of them must not keep the partners out for longer than "
            "`loginGraceSeconds`."))
    login_grace_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(default=60.0, description=(
        "Time to log in, or be disconnected. Read at start only."))
    channel_window_bytes: Annotated[int, Field(ge=64 * 1024, le=1 << 30)] = Field(
        default=16 << 20, description=(
            "The SSH window each SFTP channel advertises: how much a client may send before "
            "the server acknowledges it. Through a 40 ms-each-way link a 64 MiB `sftp put` ran "
            "at 0.64x OpenSSH's speed with asyncssh's 2 MiB (topped up at half), at 2.2x with "
            "16 MiB. It does not bound memory (asyncssh tops a window up as data arrives, not "
            "as it is written): `maxBufferedBytes` and each connection's share do. Read at "
            "start only."))
    max_buffered_bytes: Annotated[int, Field(ge=16 << 20, le=1 << 40)] = Field(
        default=256 << 20, description=(
            "What all connections together make the server hold in memory: data received and "
            "not yet written (or hashed), and READ replies not yet sent. Each connection holds "
            "16 MiB of the one and 8 MiB of the other at most; beyond this total, a connection "
            "holding more than 4 MiB of either waits (its socket is not read, its READs wait) "
            "until others give some back. 256 MiB is sixteen connections at their whole share "
            "of received data. Read at start only."))
    max_hash_commands_per_account: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=8, description=(
            "The exec hash commands (`md5sum`, `sha1sum`, `sha256sum`) one account runs at "
            "once, in all its connections: each is a thread reading a whole file or its "
            "standard input. One more gets the reason on stderr and exit status 1. 8 is "
            "rclone's default `--checkers`."))
    proxy_protocol: bool = Field(default=False, description=(
        "Read the PROXY protocol header (v1 text or v2 binary, as HAProxy's `send-proxy` and "
        "`send-proxy-v2` send it) on connections from `trustedProxies`: the address it "
        "carries is the client's for everything (filters, defender, limits, logs, audit "
        "records). A connection from a trusted proxy without a valid header within 5 s is "
        "dropped, with one log line; a header of the LOCAL command (v2) or UNKNOWN (v1), a "
        "balancer's health check, leaves the proxy's own address. A connection from any "
        "other address is served as itself, without a header (HAProxy's `expect-proxy` only "
        "for its proxies): keep such clients out with a firewall or `deniedIps` if all must "
        "come through the balancer."))
    bandwidth: Bandwidth = Field(default_factory=Bandwidth, description=(
        "The upload and download rates of each account that sets none of its own "
        "(`{uploadKiBps: 10240, downloadKiBps: 10240}`); absent or 0: unlimited. Each account "
        "has its own bucket of this rate, shared by its sessions: it is not a total of all "
        "accounts."))
    trusted_proxies: Networks = Field(default_factory=list, description=(
        "The load balancers' addresses (IP addresses or CIDR networks) whose connections "
        "carry a PROXY header, with `proxyProtocol`; required by it."))

    @cached_property
    def proxies(self) -> tuple[Network, ...]:
        """The networks whose connections begin with a PROXY header: none without
        ``proxyProtocol``."""
        return tuple(map(parse_network, self.trusted_proxies if self.proxy_protocol else []))

    @model_validator(mode="after")
    def _proxies_named(self) -> LimitsSettings:
        if self.proxy_protocol and not self.trusted_proxies:
            raise ValueError("proxyProtocol needs trustedProxies: the load balancers' "
                             "addresses, whose connections carry the PROXY header")
        return self


def _signature_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "file":
        if not parts.path.startswith("/") or parts.netloc not in ("", "localhost"):
            raise ValueError("a file:// URL must name an absolute local path "
                             "(file:///srv/sigs/x.ndb)")
        return value
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, or a file:/// path")
    return check_http_url(value)


SignatureUrl = Annotated[str, AfterValidator(_signature_url)]


def _absolute_directory(value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise ValueError("must be an absolute path (the directory clamd loads)")
    return value


class SignatureSettings(Model):
    """Our extension: how freshclam keeps the signatures of the clamd we scan with fresh."""

    update_interval: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = Field(
        default=3600, description=(
            "Seconds between signature updates (the `signatures/<instanceName>` deployment); "
            "0 switches the schedule off (`ssftp update-signatures` still works). ClamAV "
            "publishes several times a day, and its mirrors refuse clients that ask more "
            "often than every half hour."))
    official: bool = Field(default=True, description=(
        "Fetch main, daily and bytecode from ClamAV's official mirrors (or `privateMirror`). "
        "Offline this fails with one warning per update; custom URLs still update, and "
        "scanning goes on with what is loaded."))
    custom_urls: list[SignatureUrl] = Field(default_factory=list, description=(
        "Extra signature files (`.hdb`, `.hsb`, `.ndb`, `.ldb`, `.yar`, ...) to fetch with "
        "each update, as freshclam's `DatabaseCustomURL`: `http(s)://` or `file://` (an "
        "offline site's own signatures)."))
    private_mirror: Annotated[str | None, AfterValidator(
        lambda value: value if value is None else _signature_url(value))] = Field(
        default=None, description=(
            "A mirror of ClamAV's database inside the site (`http(s)://` or `file://`), "
            "used instead of the official ones."))
    database_directory: Annotated[str | None, AfterValidator(_absolute_directory)] = Field(
        default=None, description=(
            "The directory that the clamd of `clamav.address` loads its signatures from "
            "(its `DatabaseDirectory`), writable by ssftp: freshclam updates it there, and "
            "ssftp has that clamd reload it. Without it, the signatures of a clamd of your own "
            "are yours to update (`ssftp update-signatures` says so, and the schedule is not "
            "started). Not needed for the clamd that `ssftp up` starts: its directory is "
            "`system/clamav/` under the data root."))
    max_age_seconds: Annotated[int, Field(ge=3600)] = Field(
        default=2 * 24 * 3600, description=(
            "Signatures built longer ago than this are stale: `/healthz` reports "
            "`signatures: stale` (not down: the gateway still scans with what it has). Two "
            "days: ClamAV publishes daily updates, so an older database means updates have "
            "stopped. Watch `ssftp_signatures_age_seconds` for the figure."))


class RescanSettings(Model):
    """Our extension: the second look when the signatures change."""

    include_archive: bool = Field(default=False, description=(
        "Rescan `uploadarchive/` too when the signatures change (it only holds copies of "
        "files already handed on; `clean/` is always rescanned)."))


class QuarantineSettings(Model):
    """Our extension: how files leave quarantine."""

    release_approval: bool = Field(default=False, description=(
        "A release (`ssftp quarantine release`) waits for a second person: it is a Prefect "
        "run that pauses for an approver's input in the Prefect UI, and the file moves only "
        "once approved. The approver's name and the reason go into the audit record."))


class RetentionSettings(Model):
    """Our extension: how long files are kept in each area (absent: forever)."""

    clean_days: Annotated[float, Field(gt=0)] | None = Field(default=None, description=(
        "Remove files in `clean/` older than this many days."))
    quarantine_days: Annotated[float, Field(gt=0)] | None = Field(default=None, description=(
        "Remove files in `quarantine/` (and their verdict records) older than this many "
        "days."))
    upload_archive_days: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description=("Remove files in `uploadarchive/` older than this many "
                                   "days."))


class ClamavSettings(Model):
    """Our extension: which clamd scans, and how."""

    enabled: bool = Field(default=True, description=(
        "Scans with clamd. `false` leaves the scanning to the ICAP engines of `icap.servers` "
        "alone (one of them is then needed while `enableVirusScan` is on), and `ssftp up` "
        "starts no clamd."))
    address: str | list[str] | None = Field(default=None, description=(
        "The clamd to scan with: a Unix socket path (Debian's is `/run/clamav/clamd.ctl`) or "
        "`host:port` (`clamd:3310`); or a list of them, a pool: scans go round-robin, and a "
        "clamd that cannot be reached or answers nonsense is passed over at once (the file "
        "goes to the next) and asked again later, so the loss of one stops nothing; only "
        "when none answers do files wait in staging. Absent, `ssftp up` starts a clamd of its "
        "own under the data root, so that one command is enough on one machine; `ssftp "
        "worker` then needs one, and `ssftp scan` uses the one `ssftp up` started."))
    timeout: Annotated[float, Field(gt=0, le=3600)] = Field(default=120.0, description=(
        "Seconds one scan may take. A scan that waits it out is logged (`clamd scan timed "
        "out`) and followed by a PING: a clamd that answers was only slow on that file, which "
        "is retried with backoff; one that does not hangs, which is an outage. Two minutes "
        "leaves room for a large archive on a busy clamd."))
    max_file_size: Annotated[int, Field(ge=1)] = Field(default=100 * 1024 * 1024, description=(
        "Files larger than this many bytes are never clean: they are quarantined as "
        "unscannable from their size alone, without a byte read, since clamd would not scan "
        "them whole. The clamd that `ssftp up` starts gets the same limit for what it scans, "
        "and reports content beyond it (an archive that expands) as "
        "`Heuristics.Limits.Exceeded`: unscannable too, never clean."))
    max_concurrent_scans: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None, description=(
            "How many files all workers together scan at once on the clamd (a pool: on all its "
            "clamds together): the slots of the Prefect global concurrency limit "
            "`ssftp-clamd-<address>` that every scan takes one of, so adding workers never "
            "overloads a clamd. Absent: the clamd's own `MaxThreads`, as its `STATS` tells "
            "(the clamd of `ssftp up` has 4); more would only queue inside clamd. Workers "
            "sharing a clamd should agree on it: each sets the limit's slots at its start. "
            "Absent, the budget is off where the Prefect server is the one `ssftp up` started "
            "on SQLite (one worker scans alone there, and each slot is two more writes for "
            "SQLite); set it there too when other workers scan with that `up`'s clamd."))
    signatures: SignatureSettings = Field(default_factory=SignatureSettings, description=(
        "How the signatures are kept fresh (freshclam)."))
    mode: ScanMode = Field(default="auto", description=(
        "How a file reaches clamd. `auto`: its descriptor is passed over a Unix socket "
        "(clamd needs no access to the data root, and the file cannot be swapped during the "
        "scan), and it is streamed (INSTREAM) over TCP. `fd` and `stream` force one of them; "
        "`path` has clamd open the file by its path (clamd must see the same filesystem)."))

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list names no clamd: leave the key out instead")
            if len(set(value)) < len(value):
                raise ValueError("a clamd is named twice")
        for address in [value] if isinstance(value, str) else value or []:
            ClamdAddress.parse(address)
        return value

    @property
    def addresses(self) -> list[ClamdAddress]:
        """The configured clamds, parsed; empty when none is configured."""
        configured = [self.address] if isinstance(self.address, str) else self.address or []
        return [ClamdAddress.parse(address) for address in configured]


class IcapSettings(Model):
    """Our extension: ICAP (RFC 3507) servers that scan each file besides clamd."""

    servers: list[str] = Field(default_factory=list, description=(
        "ICAP services to scan with, as `icap://host[:port]/service` (port 1344 by default): "
        "a pool, tried in turn, the next at once when one cannot be reached. Each file is "
        "sent with RESPMOD; a file is clean only when clamd (unless `clamav.enabled` is "
        "false) and ICAP both say so. A commercial engine's ICAP service goes here."))
    timeout: Annotated[float, Field(gt=0, le=3600)] = Field(default=120.0, description=(
        "Seconds one ICAP scan may take; waited out, the file is retried, never clean."))

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for url in value:
            IcapAddress.parse(url)
        if len(set(value)) < len(value):
            raise ValueError("an ICAP server is named twice")
        return value

    @property
    def addresses(self) -> list[IcapAddress]:
        return [IcapAddress.parse(url) for url in self.servers]


VERDICT_ON_CLOSE_MAX = 300.0
# Scan runs in flight per lane: each scans with threads of its own (flows.scan), and more
# than this only queues them behind each other in clamd.
MAX_CONCURRENT_RUNS = 32


class ScanningSettings(Model):
    """Our extension: how the staging watcher turns completed files into scan runs."""

    stable_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(default=0.5, description=(
        "A file in staging counts as complete once its size and mtime have not changed for "
        "this long: the watcher cannot tell who wrote it (a `cp` onto the share writes in "
        "place). Not the uploads the SFTP server of the same process (`ssftp up`) has just "
        "renamed into place complete: they wait only `renameGraceSeconds`. A `serve` and a "
        "`worker` in processes of their own wait for every file. It is also how long a "
        "client has to rename its upload before it is scanned under its first name."))
    rename_grace_seconds: Annotated[float, Field(ge=0, le=60)] = Field(default=0.05, description=(
        "How long an upload the SFTP server of the same process (`ssftp up`) has just "
        "published whole waits before it is scanned (never longer than `stableSeconds`): "
        "the time a client has to rename it after its close (ssh2-sftp-client, JSch and "
        "`gio` upload to a name of their own and rename), so that it is scanned under its "
        "final name only. A rename comes a round trip after the close; the batch window and "
        "the scan run's start add some 0.1 s before the file is taken, so the default covers "
        "partners up to some 150 ms away: raise it for partners further away. It adds as "
        "much to every upload's way to `clean/`; 0 scans such uploads at once."))
    batch_window_seconds: Annotated[float, Field(ge=0, le=60)] = Field(default=0.05, description=(
        "Files that become complete within this window share one scan run. It holds only the "
        "first file after a quiet spell: while a run scans, the files that become complete "
        "meanwhile wait for it anyway and go together in the next one, so a thousand small "
        "files still cost a few Prefect runs, not a thousand. A longer window delays every "
        "lone upload by as much."))
    max_batch_files: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=1000, description=(
            "The most files one scan run takes: a batch that reaches it starts at once, and "
            "the files beyond it wait for the next run."))
    large_file_size: Annotated[int, Field(ge=1)] = Field(default=16 * 1024 * 1024, description=(
        "Files of this many bytes and more are scanned in runs of their own, one file at a "
        "time, beside the others': seconds each to hash and scan, they must not hold up "
        "another partner's small file."))
    concurrent_runs: int | Literal["auto"] = (
        Field(default="auto", description=(
            "Scan runs in flight at once in each lane (the small files' runs, and the large "
            "files' beside them); the next batch is still collected while they scan. `auto`: "
            "1 when the Prefect server's database is SQLite (it turns concurrent writers away, "
            "and Prefect's client then waits 2 s per retry), 4 when it is PostgreSQL. `auto` "
            "knows the database only of the Prefect server `ssftp up` starts (from "
            "`PREFECT_API_DATABASE_CONNECTION_URL`); `ssftp worker`, and `up` on another's "
            "server, take 1: set 4 there when that server runs on PostgreSQL. The choice is "
            f"logged at start (`scan runs at once`). At most {MAX_CONCURRENT_RUNS}. A reload "
            "applies to the next run that starts.")))
    clean_file_events: bool | Literal["auto"] = Field(default="auto", description=(
        "Whether each clean file is also a Prefect event (`ssftp.file.clean`, see "
        "[Prefect](prefect.md#events)); every other outcome always is. `auto`: on when the "
        "Prefect server's database is PostgreSQL, off on SQLite, where an event written per "
        "file keeps the server's database busy: it turned the scan runs' own writes away, and "
        "a 1000-file upload took 5 to 8 s instead of 1 to 2 s from its end until all was in "
        "clean/ (each refusal costs Prefect's client a 2 s wait). `auto` knows the database "
        "as `concurrentRuns` does (only that of the Prefect server `ssftp up` starts; off "
        "elsewhere); `true` keeps the events on any database."))
    retry_initial_seconds: Annotated[float, Field(gt=0)] = Field(default=5.0, description=(
        "A file clamd did not scan (clamd down, a timeout, an error) goes back to staging and "
        "is retried after this delay, doubling each time up to `retryMaxSeconds`."))
    retry_max_seconds: Annotated[float, Field(gt=0)] = Field(default=600.0, description=(
        "The longest wait between two attempts of a file."))
    verdict_on_close: Annotated[StrictFloat, Field(gt=0, le=VERDICT_ON_CLOSE_MAX)] | None = (
        Field(default=None, description=(
            "Tells the partner the verdict in the reply to the upload's close: the server "
            "waits up to this many seconds for the file's verdict and answers an infected or "
            "unscannable file with a failure naming it; a clean file, or no verdict in time, "
            "is answered OK. Absent: the close does not wait (the behaviour of sSFTP and of "
            "plain SFTP servers). Strict: `true` is not one second. At most "
            f"{VERDICT_ON_CLOSE_MAX:g} s, since a close reply held longer looks like a hung "
            "server. A reload applies to the next close.")))
    denied_file_types: FileTypes = Field(default_factory=list, description=(
        "MIME types no file may have, whoever sent it (each owner's `deniedFileTypes` adds "
        "to these): judged from the content, during the scan; such a file is blocked "
        "(quarantined, with a `virusFound` webhook whose `reason` is `policy`)."))

    @field_validator("concurrent_runs", mode="before")
    @classmethod
    def _runs(cls, value: object) -> object:
        """One line for a bad value (a union of a number and ``auto`` would give one per
        member), and ``true`` or ``'4'`` are not a number of runs; left empty, it is ``auto``."""
        if value is None:
            return "auto"
        if value == "auto" or (type(value) is int and 1 <= value <= MAX_CONCURRENT_RUNS):
            return value
        raise ValueError(f"{value!r}: a number of runs from 1 to {MAX_CONCURRENT_RUNS}, or auto")

    @field_validator("clean_file_events", mode="before")
    @classmethod
    def _events(cls, value: object) -> object:
        """One line for a bad value, as for ``concurrentRuns``; left empty, it is ``auto``."""
        if value is None:
            return "auto"
        if value == "auto" or type(value) is bool:
            return value
        raise ValueError(f"{value!r}: true, false or auto")


class MetricsSettings(Model):
    """Our extension: where ``/metrics`` (Prometheus) and ``/healthz`` are served; off when
    ``listen`` is absent. ``--metrics-listen`` on ``up``, ``serve`` and ``worker`` overrides it."""

    listen: str | None = Field(default=None, description=(
        "`HOST:PORT` (`[::1]:9464` for IPv6) to serve `/metrics` and `/healthz` on, exactly "
        "that address and without authentication: keep it on loopback or a private network. "
        "Absent, nothing listens that the operator did not ask for. Read at start."))

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value


class SsftpConfig(Model):
    sftp_port: Annotated[int, Field(ge=0, le=65535)] = Field(default=2002, description=(
        "The TCP port the SFTP server listens on; `--port` of `ssftp up` and `ssftp serve` "
        "overrides it, and 0 picks a free one. Read at start. sSFTP's key and default."))
    sftp_host: str = Field(default="127.0.0.1", description=(
        "The address the SFTP server listens on; `--host` overrides it. Loopback, so that a "
        "new install is reachable from other machines only once the operator says so: "
        "`0.0.0.0` accepts clients from anywhere. Read at start."))
    enable_virus_scan: bool = Field(default=True, description=(
        "Scanning is on unless switched off here. `false` passes files to `clean/` unscanned, "
        "with the verdict `unscanned` in the audit log and a warning at start and from "
        "`check-config`. sSFTP's key."))
    enable_file_scavenging: bool = Field(default=True, description=(
        "sSFTP's switch for scanning files left in staging again. Accepted and ignored (`false` "
        "is a warning): ssftp always scans every file left in staging again on start, so a "
        "crash loses nothing."))
    enable_sftp_client_downloader: bool = Field(default=False, description=(
        "Runs the `sftpClientDownloaders`. Off: ssftp fetches from remote servers only when "
        "told to. Switched off on a reload, their schedules are removed. sSFTP's key."))
    enable_sftp_client_uploader: bool = Field(default=False, description=(
        "Runs the `sftpClientUploaders`. Off: ssftp sends files to remote servers only when "
        "told to. Switched off on a reload, their schedules are removed. sSFTP's key."))
    fsync_uploads: bool = Field(default=True, description=(
        "Each upload is fsynced before it becomes visible, so a power cut cannot turn a "
        "completed upload into an empty or partial file. `false` trades that for speed where "
        "fsync is slow."))
    partial_upload_ttl_seconds: Annotated[float, Field(gt=0, le=365 * 24 * 3600)] = Field(
        default=24 * 3600.0, description=(
            "How long an upload cut off by a dropped connection is kept, hidden in `<account "
            "root>/.ssftp-partials/`, for the same account to resume, and how long a client's "
            "own temp file left by a client that went away (`NAME.filepart`, lftp's `.in.NAME`, "
            "gvfs's `.giosave*`) "
            "stays in staging, before both are removed (logged as `removed unfinished "
            "upload`). Counted from the server's own clock and the file's last change (its "
            "ctime), never from an mtime a client can set. A day covers a partner whose link "
            "failed overnight."))
    defender: DefenderSettings = Field(default_factory=DefenderSettings, description=(
        "Bans an address after repeated failed logins."))
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description=(
        "What one client may hold of the server: handles, sessions, connections, memory."))
    instance_name: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        default_factory=socket.gethostname, description=(
            "Names this instance in webhooks, audit records, Prefect run tags and events, and "
            "its transfer deployments (`download/<instanceName>`, `upload/<instanceName>`). "
            "The host name by default; give each instance that shares a Prefect server (a "
            "chain, a split deployment) a name of its own."))
    clamav: ClamavSettings = Field(default_factory=ClamavSettings, description=(
        "Which clamd scans, and how."))
    icap: IcapSettings = Field(default_factory=IcapSettings, description=(
        "ICAP servers that scan too (none by default)."))
    scanning: ScanningSettings = Field(default_factory=ScanningSettings, description=(
        "How completed files become scan runs, and how a failed scan is retried."))
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description=(
        "Where `/metrics` and `/healthz` are served."))
    rescan: RescanSettings = Field(default_factory=RescanSettings, description=(
        "What is scanned again when the signatures change."))
    quarantine: QuarantineSettings = Field(default_factory=QuarantineSettings, description=(
        "How files leave quarantine."))
    retention: RetentionSettings = Field(default_factory=RetentionSettings, description=(
        "How long files are kept in each area; a daily run removes older ones."))
    transfers: TransferSettings = Field(default_factory=TransferSettings, description=(
        "How downloaders and uploaders retry and share remote servers."))
    webhooks: list[Webhook] = Field(default_factory=list, description=(
        "Webhooks POSTed for infected and unscannable files. Delivered at least once, from a "
        "durable outbox, with a stable `eventId`. sSFTP's key."))
    log_dests: list[LogDest] = Field(default_factory=list, description=(
        "More places for the logs, besides the data root's `log/` and stdout. sSFTP's key."))
    users: Users = Field(default_factory=Users, description="The accounts. sSFTP's key.")
    sftp_client_downloaders: list[Downloader] = Field(default_factory=list, description=(
        "Scheduled downloads from remote SFTP servers into staging, where the files are "
        "scanned like uploads; run only with `enableSftpClientDownloader: true`. sSFTP's key."))
    sftp_client_uploaders: list[Uploader] = Field(default_factory=list, description=(
        "Scheduled uploads of clean files to remote SFTP servers (another ssftp's staging "
        "account, in a chain); run only with `enableSftpClientUploader: true`. sSFTP's key."))

    @model_validator(mode="after")
    def _an_engine(self) -> SsftpConfig:
        if self.enable_virus_scan and not self.clamav.enabled and not self.icap.servers:
            raise ValueError("scanning is on (enableVirusScan) but no engine would scan: "
                             "clamav.enabled is false and icap.servers is empty")
        return self

    def log_dirs(self, layout: DataLayout) -> list[Path]:
        """Where the logs go: the data root's log/, plus each ``logDests`` file destination."""
        return [layout.log,
                *(Path(dest.props["path"]) for dest in self.log_dests if dest.kind == "file")]
