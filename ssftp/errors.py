"""Every failure ssftp expects, in one hierarchy.

The command line catches :class:`SsftpError` once (``deployments.cli``) and prints its message
as one line: an operator reads what is wrong and where, never a traceback. So a message must
name the thing at fault (the file and key, the address, the port) and never carry a secret.
Errors of a library ssftp uses (asyncssh, OSError, httpx) are translated into these where the
library is called, so code above that sees only this hierarchy::

    SsftpError
    ├── ConfigError              ssftp.yaml cannot be used; ``issues`` lists every problem
    │                            (:class:`ConfigIssue`: the key path and line of each)
    ├── InvalidValueError        a value given to ssftp (in ssftp.yaml, on the command line)
    │   │                        cannot be used: a permission name, a clamd address, ...
    │   ├── PasswordFormatError  looks like a password hash but is not a valid one
    │   ├── PublicKeyError       not an OpenSSH public key ssftp accepts
    │   └── NotInQuarantineError a name given for a quarantined file is none: outside
    │                            quarantine/, a verdict record, a link on the way
    ├── Refused                  an SFTP operation the account may not do (told to the client)
    ├── UploadFailedError        a write or fsync of an upload failed (a full disk): the
    │                            file is discarded at close, never published
    ├── ClamdError               no clamd to scan with
    │   ├── ClamdStartError      our own clamd did not start (with the end of its log)
    │   └── NoClamdError         scanning is on, and no clamd address is known
    ├── SignatureUpdateError     the signatures of the clamd ssftp scans with cannot be
    │                            updated (freshclam, the database directory, clamd's RELOAD)
    ├── WebhookError             a receiver did not take a notification (it is retried)
    │   └── NotDeliveredError    a notify run left some of its notifications undelivered:
    │                            its Prefect run fails, they stay owed and go again later
    ├── OutboxError              the webhook outbox (system/outbox.sqlite3) cannot be read
    │                            or written: the file it is about stays where it was
    ├── ProxyHeaderError         a trusted proxy's connection began with no valid PROXY header
    ├── BanStoreError            the defender's bans (system/defender.sqlite3) cannot be
    │                            read or written
    ├── AuditLogError            an audit record did not reach every audit.log: the file
    │                            it is about stays where it was (and is scanned again)
    ├── ReleaseRefusedError      a release from quarantine that the rescan (still detected)
    │                            or the approver refused: nothing moved
    ├── TransferError            a downloader or uploader could not do its work
    │   ├── RemoteUnavailableError  the remote server is unreachable or went away: retried
    │   ├── RemoteRefusedError      host key, login or key file refused: fix the config
    │   ├── TransferFailedError     some files failed, the others were transferred
    │   └── TransferStateError      system/transfers.sqlite cannot be read or written
    └── ServiceError             a part of the running gateway cannot start or stopped
        ├── ListenError          an address to listen on (SFTP, metrics) cannot be had
        ├── PrefectServerError   no Prefect server answers, or ours did not start
        ├── WatchIncompleteError an inotify watch (staging, the config file's directory)
        │                        no longer sees every change (a full kernel queue, a
        │                        directory it cannot watch): ssftp looks for itself instead
        ├── WorkerDiedError      the scan worker ended; ``ssftp up`` stops rather than
        │                        accept uploads nobody scans
        └── RunResultsLostError  a scan or rescan run ended, and its results cannot be
                                 read back from Prefect's result storage

:class:`InvalidValueError` is also a ``ValueError``: the config schema's validators let it
through, and pydantic reports a ``ValueError`` as a problem at the key being validated.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where in ssftp.yaml: keys and list indexes from the top.
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in ssftp.yaml, with the key path and line that say where: the loader and
    the rules find them, :class:`ConfigError` carries them."""

    path: KeyPath
    message: str
    line: int | None = None

    @property
    def dotted(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text or "(top level)"

    def describe(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.dotted}: {self.message}"


class SsftpError(Exception):
    """A failure ssftp expects; its message is the one line an operator sees."""


class ConfigError(SsftpError):
    """The config file is not usable; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join("  " + issue.describe(source) for issue in issues)
        super().__init__(f"invalid config {source}:\n{lines}")


class InvalidValueError(SsftpError, ValueError):
    """A value given to ssftp that cannot be used; the message says which and why."""


class PasswordFormatError(InvalidValueError):
    """A value that looks like a hash but is not a valid one (refused, never taken as plaintext)."""


class PublicKeyError(InvalidValueError):
    """A configured public key that cannot be used."""


class NotInQuarantineError(InvalidValueError):
    """The name given (``ssftp quarantine release|delete PATH``) is not a file in quarantine:
    outside it, a verdict record, a directory, or reached only through a link."""


class Refused(SsftpError):
    """An operation the account may not do; ``reason`` is logged and sent to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UploadFailedError(SsftpError):
    """An upload the client saw fail (a write, a short write, an fsync): never published."""


class ClamdError(SsftpError):
    """There is no clamd to scan with."""


class ClamdStartError(ClamdError):
    """clamd could not be started; the message carries the end of its log."""


class NoClamdError(ClamdError):
    """Scanning is on but no clamd address is known."""


class WebhookError(SsftpError):
    """The receiver did not take the notification (it will be retried)."""


class NotDeliveredError(WebhookError):
    """A notify run did not deliver all it was given; what it did not is owed again later."""


class OutboxError(SsftpError):
    """The webhook outbox cannot be read or written (a full disk, a damaged file)."""


class ProxyHeaderError(SsftpError):
    """A trusted proxy's connection began with no valid PROXY protocol header: it is dropped,
    the reason logged (server.proxy_protocol)."""


class BanStoreError(SsftpError):
    """``system/defender.sqlite3`` cannot be read or written (a full disk, a damaged file)."""


class AuditLogError(SsftpError):
    """An audit record could not be written to every ``audit.log`` (a full disk, a lost share).

    A file is moved to ``clean/`` or ``quarantine/`` only after its record is written, so
    this keeps the file where it was, to be tried again.
    """


class ReleaseRefusedError(SsftpError):
    """A release from quarantine was refused, not failed: the rescan still detects the file
    (and no ``--force``), or the approver said no or never answered. Nothing moved."""


class TransferError(SsftpError):
    """A downloader or uploader could not do its work."""


class RemoteUnavailableError(TransferError):
    """The remote server could not be reached or went away: worth trying again later."""


class RemoteRefusedError(TransferError):
    """Trying again will not help until the config or the remote server changes."""


class TransferFailedError(TransferError):
    """Some files could not be transferred; the others were."""


class TransferStateError(TransferError):
    """``system/transfers.sqlite`` cannot be read or written (a full disk, a damaged file)."""


class ServiceError(SsftpError):
    """A part of the running gateway could not start, or stopped on its own."""


class ListenError(ServiceError):
    """The SFTP server or the metrics listener cannot listen on its address (in use,
    privileged, not local)."""


class PrefectServerError(ServiceError):
    """No Prefect server answers, or ours did not start (the message has its log's end)."""


class WatchIncompleteError(ServiceError):
    """An inotify watch no longer sees every change below its directory (the message says
    why); staging is walked, the config file looked at, until a new watch is set up."""


class WorkerDiedError(ServiceError):
    """The scan worker ended on its own; ``ssftp up`` stops rather than serve unscanned."""


class RunResultsLostError(ServiceError):
    """A scan or rescan run ended, but what it returned cannot be read back (Prefect's
    result storage lost it, e.g. after its server stalled): the run's files were scanned and
    moved as their verdicts said, and what is still in staging is scanned again. Not a
    failed scan, which is what Prefect's own ``MissingResult`` made it look like."""


class SignatureUpdateError(SsftpError):
    """A signature update could not be done; the message says what is wrong."""
