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

from ssftp.addresses import ClamdAddress, parse_listen
from ssftp.layout import RESERVED_PREFIX, is_reserved_name
from ssftp.permissions import parse_permission_names

# How a file reaches clamd: see ssftp.scan.clamd (auto: by descriptor, or streamed to a
# clamd on another machine).
ScanMode = Literal["auto", "path", "fd", "stream"]

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, hide_input_in_errors=True
    )


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
    username: Annotated[str, AfterValidator(_username)]
    password: SecretStr | None = None
    # sSFTP has one key per account; a list is our extension for key rotation.
    public_key: str | list[str] | None = None

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


class AccountEntry(Model):
    directory: Directory
    auth: Auth
    permissions: Annotated[list[str] | None, AfterValidator(_permission_names)] = None


class StagingAccount(AccountEntry):
    @field_validator("directory")
    @classmethod
    def _no_wildcard(cls, value: str) -> str:
        if value == "*":
            raise ValueError("'*' is only allowed for cleanDir accounts")
        return value


class CleanAccount(AccountEntry):
    allow_delete: bool = False


class Users(Model):
    staging_dir: list[StagingAccount] = Field(default_factory=list)
    clean_dir: list[CleanAccount] = Field(default_factory=list)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    parts.port  # noqa: B018 - raises ValueError for a port out of range
    return value


class Webhook(Model):
    name: Literal["virusFound", "scanError"]
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$"), AfterValidator(_http_url)]
    secret: SecretStr | None = None
    # Seconds for a whole attempt (connect, send, read the answer), not per read.
    timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    # Our extension: the first retry waits this long, each next one twice as long.
    retry_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = 2.0


class LogDest(Model):
    kind: Literal["file", "stdout"]
    props: dict[str, str] = Field(default_factory=dict)

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

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr | None = None
    remote_directory: str | None = None
    # Our extensions: remote host keys are checked unless the entry explicitly opts out.
    known_hosts: str | None = None
    host_key_fingerprint: Annotated[str | None, AfterValidator(_fingerprint)] = None
    insecure_ignore_host_key: bool = False
    interval: Annotated[int, Field(ge=1)] | None = None
    cron: Annotated[str | None, AfterValidator(_cron)] = None

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


class Downloader(RemoteEndpoint):
    private_key_path: str | None = None
    private_key_passphrase: SecretStr | None = Field(default=None, alias="privatekeyPassphrase")
    local_staging_directory: Directory
    delete_remote_file_after_download: bool = False
    override_existing_file: bool = True


class Uploader(RemoteEndpoint):
    # sSFTP spells this one differently from the downloader's privateKeyPath.
    private_key_path: str | None = Field(default=None, alias="privatekeyPath")
    private_key_passphrase: SecretStr | None = Field(default=None, alias="privatekeyPassphrase")
    # "*" uploads everything in clean/.
    local_directory_to_upload: Directory
    override_remote_existing_file: bool = True


class TransferSettings(Model):
    """Our extension: how downloaders and uploaders retry and share remote servers."""

    # A run that cannot reach its server tries again this many times, after retryDelaySeconds,
    # doubling each time.
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    retry_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # At most this many downloaders and uploaders talk to one host:port at once.
    max_connections_per_host: Annotated[int, Field(ge=1, le=100)] = 2
    # Connect and log in within this many seconds, or the attempt fails (and is retried).
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0


class DefenderSettings(Model):
    """Our extension: ban an address after too many failed logins."""

    max_failures: Annotated[int, Field(ge=1)] = 10
    window_seconds: Annotated[float, Field(gt=0)] = 300.0
    ban_seconds: Annotated[float, Field(ge=0)] = 900.0


class LimitsSettings(Model):
    """Our extension: what one client may hold of the server, so that no account can take it
    from the others. A refused limit is logged once per session; refused connections once per
    address and limit, and refused requests once per connection, operation and reason, then
    as a count each minute (a flood writes a few lines, not one each).

    ``maxOpenHandles`` bounds the open files and directories of one SFTP session: each holds a
    file descriptor, and the process has a fixed number of them for every session. 512 is far
    more than any real client keeps open (OpenSSH's sftp: a few; rclone: its transfers) and
    leaves a 20 000-descriptor server room for dozens of sessions at their limit.

    ``maxSessionsPerConnection`` (OpenSSH's MaxSessions, 10) bounds the SFTP channels of one
    connection, each with its own handles. An account's parallel transfers (rclone's 4 to
    8, a few scripts) fit in ``maxConnectionsPerAccount`` 20; one address gets more (50),
    since several partners may share one behind NAT. ``maxUnauthenticatedConnections``
    (OpenSSH's MaxStartups) bounds those still logging in, in total: each costs a key
    exchange, and a flood of them must not keep the partners out for longer than
    ``loginGraceSeconds`` (asked at start only).

    ``channelWindowBytes`` is the SSH window each SFTP channel advertises: how much a client
    may send before the server acknowledges it. With asyncssh's 2 MiB, topped up at half,
    uploads through a 40 ms-each-way link ran at 0.64x OpenSSH's speed; with 16 MiB at 2.2x.
    Asked at start only. It does not bound memory (asyncssh tops a window up as data arrives,
    not as it is written): ``maxBufferedBytes`` and each connection's share do (below).

    ``maxBufferedBytes`` bounds what all connections together make the server hold in memory:
    data received and not yet written (or hashed), and READ replies not yet sent; each
    connection holds 16 MiB of the one and 8 MiB of the other at most. Beyond it, a connection
    holding more than 4 MiB of either waits (its socket is not read, its READs wait) until
    others give some back. 256 MiB is sixteen connections at their whole share of received
    data. Asked at start only.

    ``maxHashCommandsPerAccount`` bounds the exec hash commands (``sha256sum``...) an account
    runs at once, in all its connections: each is a thread reading a whole file or its
    standard input. 8 is rclone's default ``--checkers``.
    """

    max_open_handles: Annotated[int, Field(ge=1, le=100_000)] = 512
    max_sessions_per_connection: Annotated[int, Field(ge=1, le=1000)] = 10
    max_connections_per_account: Annotated[int, Field(ge=1, le=10_000)] = 20
    max_connections_per_address: Annotated[int, Field(ge=1, le=10_000)] = 50
    max_unauthenticated_connections: Annotated[int, Field(ge=1, le=10_000)] = 64
    login_grace_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    channel_window_bytes: Annotated[int, Field(ge=64 * 1024, le=1 << 30)] = 16 << 20
    max_buffered_bytes: Annotated[int, Field(ge=16 << 20, le=1 << 40)] = 256 << 20
    max_hash_commands_per_account: Annotated[int, Field(ge=1, le=10_000)] = 8


class ClamavSettings(Model):
    """Our extension: which clamd scans, and how.

    Without ``address``, ``ssftp up`` starts its own clamd under the data root; ``ssftp worker``
    and ``ssftp scan`` need one.
    """

    address: str | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0
    # Files over this size are never passed as clean: they go to quarantine as unscannable.
    max_file_size: Annotated[int, Field(ge=1)] = 100 * 1024 * 1024
    # auto: descriptor passing over a Unix socket, INSTREAM over TCP.
    mode: ScanMode = "auto"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            ClamdAddress.parse(value)
        return value


VERDICT_ON_CLOSE_MAX = 300.0


class ScanningSettings(Model):
    """Our extension: how the staging watcher turns completed files into scan runs."""

    # A file counts as complete once its size and mtime have not changed for this long
    # (what other writers get; ssftp's own uploads are renamed into place complete).
    stable_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.5
    # Files that become ready within this window share one scan run.
    batch_window_seconds: Annotated[float, Field(ge=0, le=60)] = 0.25
    max_batch_files: Annotated[int, Field(ge=1, le=10000)] = 1000
    # Files of this many bytes and more are scanned in runs of their own, beside the others'
    # (seconds each to hash and scan: they must not hold up the small files behind them).
    large_file_size: Annotated[int, Field(ge=1)] = 16 * 1024 * 1024
    # A file that could not be scanned (clamd down, timeout) is retried after this delay,
    # doubling each time up to the maximum.
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 5.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 600.0
    # The close reply of an upload waits up to this long for the file's verdict, and reports
    # an infected or unscannable file as a failure (server.verdict_wait); None: it does not
    # wait. Strict: ``true`` is not one second. At most five minutes: a close reply held
    # longer looks like a hung server.
    verdict_on_close: Annotated[StrictFloat, Field(gt=0, le=VERDICT_ON_CLOSE_MAX)] | None = None


class MetricsSettings(Model):
    """Our extension: where ``/metrics`` (Prometheus) and ``/healthz`` are served; off when
    ``listen`` is absent. ``--metrics-listen`` on ``up``, ``serve`` and ``worker`` overrides it."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value


class SsftpConfig(Model):
    sftp_port: Annotated[int, Field(ge=0, le=65535)] = 2002
    # Our extension: loopback unless the operator says otherwise (or passes --host).
    sftp_host: str = "127.0.0.1"
    # Safe default: scanning is on unless explicitly switched off.
    enable_virus_scan: bool = True
    # sSFTP's switch for rescanning leftovers; ssftp always rescans staging on start.
    enable_file_scavenging: bool = True
    enable_sftp_client_downloader: bool = False
    enable_sftp_client_uploader: bool = False
    # Our extension: fsync each upload before it becomes visible, so a power cut cannot turn
    # a completed upload into an empty file.
    fsync_uploads: bool = True
    # Our extension: how long an interrupted upload is kept (hidden) for a resume, and a
    # client's own temp file (``*.filepart``, lftp's ``.in.NAME``) left by a client that went
    # away, before both are removed. A day covers a partner whose link failed overnight.
    partial_upload_ttl_seconds: Annotated[float, Field(gt=0, le=365 * 24 * 3600)] = 24 * 3600.0
    defender: DefenderSettings = Field(default_factory=DefenderSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    # Our extension: the name webhooks and audit records give this instance (in a chain).
    instance_name: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        default_factory=socket.gethostname)
    clamav: ClamavSettings = Field(default_factory=ClamavSettings)
    scanning: ScanningSettings = Field(default_factory=ScanningSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    transfers: TransferSettings = Field(default_factory=TransferSettings)
    webhooks: list[Webhook] = Field(default_factory=list)
    log_dests: list[LogDest] = Field(default_factory=list)
    users: Users = Field(default_factory=Users)
    sftp_client_downloaders: list[Downloader] = Field(default_factory=list)
    sftp_client_uploaders: list[Uploader] = Field(default_factory=list)
