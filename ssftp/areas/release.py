"""Releasing a file from quarantine to ``clean/<same sub path>``: the way out for a false
positive, by an operator's decision that the audit log keeps.

It reads top-down, as :class:`Releaser` is called: :meth:`~Releaser.rescan` exactly the bytes
that would move (opened once, hashed, scanned by descriptor, the name checked to still hold
them), :meth:`~Releaser.check` the verdict, then :meth:`~Releaser.release`: record (the audit
record and the ``released`` webhooks in the outbox, before the move, as a scan's record gates
its move), move, and keep the verdict record as history. Between the rescan and the move an
approver may be asked (flows/quarantine.py); the move then checks that the file is still the
one rescanned.

The rules, all failing closed:

- still detected (infected, unscannable, or not scanned as scanning is off): refused, unless
  ``force``; the audit record says it was forced and what the rescan found;
- a rescan that gives no verdict (clamd down, a timeout): refused, also with ``force``. Force
  overrides a verdict the operator has read; without one there is nothing to override, and a
  release would carry a verdict nobody saw. Try again once clamd answers;
- a name already taken in ``clean/`` (a newer upload of that name): refused, nothing
  replaced. A numbered name beside it would hand consumers a file under a name that nobody
  sent, and which of the two is wanted is the operator's call;
- a file with a second hard link: refused, as the scanner never passes one (another name could
  change the bytes after the verdict).

The move never exposes a partial file and never replaces: a hard link (which refuses a name
that exists, atomically) then the unlink of the quarantine name; across filesystems a copy to
a hidden temp name in ``clean/``, published without replacing, then the unlink.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ssftp.areas.quarantine import (
    AREA,
    checked_reason,
    directory_of,
    exists_at,
    history_name,
    open_directory,
    read_record,
    record_name,
)
from ssftp.config.schema import ScanMode, SsftpConfig
from ssftp.errors import (
    AuditLogError,
    ClamdError,
    NotInQuarantineError,
    OutboxError,
    ReleaseRefusedError,
    SsftpError,
)
from ssftp.file_stamp import sha256_of
from ssftp.layout import TEMP_PREFIX, DataLayout
from ssftp.logs import audit_event, one_line, write_audit_event
from ssftp.moves import proc_path, publish
from ssftp.notify.outbox import Outbox
from ssftp.notify.owed import owed_release
from ssftp.notify.webhooks import Notification
from ssftp.scan.engines import Engine
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.verdict import Verdict, VerdictKind

# How long a release waits for its approver (``quarantine.releaseApproval``) before nothing
# moves: a working day and a night.
APPROVAL_TIMEOUT_SECONDS = 24 * 3600
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Request:
    """Who asks to release, why, and whether a detection is overridden."""

    reason: str
    operator: str
    force: bool = False
    # The second person who approved it (``quarantine.releaseApproval``); None without one.
    approver: str | None = None


@dataclass(frozen=True)
class Rescan:
    """What the rescan found about exactly the bytes at ``quarantine/<sub_path>``."""

    sub_path: PurePosixPath
    verdict: Verdict
    sha256: str
    size: int
    # Which file, and unchanged since: device, inode, mtime and ctime (a writer can put an
    # old mtime back, never an old ctime).
    identity: tuple[int, int, int, int]
    record: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def shown(self) -> str:
        return f"{AREA}/{one_line(self.sub_path.as_posix())}"

    @property
    def finding(self) -> str:
        """What the rescan found, in one phrase: the signature, else clamd's words."""
        return self.verdict.signature or self.verdict.detail


@dataclass(frozen=True)
class Released:
    """A release done: its audit record, the webhooks it owes (stored, not yet sent) and the
    Prefect event it raises."""

    result: ScanResult
    audit: dict[str, Any]
    notifications: list[Notification]
    event: str


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_ctime_ns)


def _now() -> datetime:
    return datetime.now(UTC)


class Releaser:
    """Everything a release needs: the data root, the clamd that rescans (None when scanning
    is off), the outbox and the config (webhooks, instance name)."""

    def __init__(self, layout: DataLayout, client: Engine | None, *, mode: ScanMode,
                 outbox: Outbox, config: SsftpConfig) -> None:
        self.layout = layout
        self.client = client
        self.mode = mode
        self.outbox = outbox
        self.config = config

    def rescan(self, sub_path: PurePosixPath) -> Rescan:
        """Hash and scan the quarantined file through one descriptor; raises
        NotInQuarantineError for a name that is no regular file of quarantine."""
        shown = f"{AREA}/{one_line(sub_path.as_posix())}"
        with directory_of(self.layout, sub_path) as dir_fd:
            try:
                fd = os.open(sub_path.name, _OPEN_FILE, dir_fd=dir_fd)
            except OSError as exc:  # ELOOP: a symlink, never followed
                raise NotInQuarantineError(f"{shown} cannot be released: {exc.strerror or exc}"
                                           "; delete it instead") from None
            try:
                before = os.fstat(fd)
                if not stat.S_ISREG(before.st_mode):
                    raise NotInQuarantineError(f"{shown} is not a regular file; it cannot be "
                                               "released, delete it instead")
                if before.st_nlink > 1:
                    raise SsftpError(f"{shown} has {before.st_nlink} hard links; only a file "
                                     "with a single name can be released")
                sha256, size = sha256_of(fd)
                verdict = self._verdict(fd, size, self.layout.quarantine / sub_path)
                after = os.fstat(fd)
                if (_identity(after) != _identity(before) or size != before.st_size
                        or _identity(os.lstat(sub_path.name, dir_fd=dir_fd)) != _identity(after)):
                    verdict = Verdict(VerdictKind.ERROR, "the file changed while it was scanned")
                record = read_record(sub_path.name, dir_fd)
            finally:
                os.close(fd)
        return Rescan(sub_path, verdict, sha256, size, _identity(before), record)

    def _verdict(self, fd: int, size: int, path: Path) -> Verdict:
        if self.client is None:
            return Verdict(VerdictKind.UNSCANNED,
                           "scanning is switched off (enableVirusScan: false)")
        if (limited := self.client.over_limit(size)) is not None:
            return limited
        # By descriptor, as the scanner does: clamd reads the bytes that were hashed. In path
        # mode clamd opens the name itself, and the check after the scan stands behind it.
        return self.client.scan(path if self.mode == "path" else Path(proc_path(fd)), self.mode)

    @staticmethod
    def check(rescan: Rescan, force: bool) -> None:
        """Whether the rescan lets the file go (see the module's rules)."""
        kind = rescan.verdict.kind
        if kind is VerdictKind.ERROR:
            raise ClamdError(f"{rescan.shown} could not be rescanned ({rescan.verdict.detail});"
                             " nothing moved: a release needs a verdict, also with --force")
        if kind is not VerdictKind.CLEAN and not force:
            raise ReleaseRefusedError(
                f"{rescan.shown} is still {kind}: {one_line(rescan.finding)}; nothing moved "
                "(--force releases it anyway)")

    def refused(self, rescan: Rescan, request: Request, why: str,
                flow_run_id: str | None = None) -> None:
        """The audit record of a release that did not happen (refused by the rescan or the
        approver): a decision about the file, so part of its history."""
        result = self._result(rescan, request, flow_run_id)
        audit_event("release", logging.WARNING,
                    **self._audit(result, rescan, request, released=False, why=why))

    def release(self, rescan: Rescan, request: Request,
                flow_run_id: str | None = None) -> Released:
        """Record the release and move the file to ``clean/<same sub path>``; the verdict
        record stays in quarantine under its history name. Raises before anything moved."""
        request = Request(checked_reason(request.reason), request.operator, request.force,
                          request.approver)
        sub_path = rescan.sub_path
        target = f"clean/{one_line(sub_path.as_posix())}"
        with directory_of(self.layout, sub_path) as from_fd:
            try:
                info = os.lstat(sub_path.name, dir_fd=from_fd)
            except FileNotFoundError:
                raise NotInQuarantineError(f"{rescan.shown} is gone") from None
            if _identity(info) != rescan.identity:
                raise SsftpError(f"{rescan.shown} changed since its rescan; nothing moved "
                                 "(release it again)")
            try:
                to_fd = open_directory(self.layout.clean, sub_path.parts[:-1], create=True)
            except OSError as exc:
                raise SsftpError(f"{target} cannot be reached without following a link or "
                                 f"a file on the way: {exc.strerror or exc}") from None
            try:
                return self._record_and_move(rescan, request, from_fd, to_fd, flow_run_id)
            except FileExistsError:
                raise SsftpError(f"{target} exists (a newer file of that name); nothing "
                                 "moved: nothing in clean/ is replaced by a release") from None
            finally:
                os.close(to_fd)

    def _record_and_move(self, rescan: Rescan, request: Request, from_fd: int, to_fd: int,
                         flow_run_id: str | None) -> Released:
        name = rescan.sub_path.name
        if exists_at(name, to_fd):
            raise FileExistsError(name)
        result = self._result(rescan, request, flow_run_id)
        audit = self._audit(result, rescan, request, released=True)
        due = owed_release(result, self.config, {
            "reason": request.reason, "operator": request.operator,
            "approver": request.approver, "forced": _forced(rescan, request),
            "quarantinedSignature": (rescan.record or {}).get("signature")})
        self.outbox.add(item.stored() for item in due.notifications)
        try:
            write_audit_event("release", logging.INFO, **audit)
            _move(from_fd, name, to_fd)
        except (AuditLogError, OSError) as exc:
            self._undo(due.notifications, result, exc)
            if isinstance(exc, FileExistsError):
                raise
            raise SsftpError(f"{rescan.shown} not released: {exc}") from None
        _keep_as_history(from_fd, name, _now())
        return Released(result, audit, due.notifications, due.event or "")

    def _undo(self, notifications: list[Notification], result: ScanResult,
              error: Exception) -> None:
        """The record was stored but the file did not move: its webhooks are never sent, and
        a second audit record says it stayed (as a scan's failed move has one)."""
        for notification in notifications:
            with contextlib.suppress(OutboxError):
                self.outbox.abandoned(notification.id, "the release did not move the file")
        if not isinstance(error, AuditLogError):
            audit_event("release", logging.WARNING, file=result.file, source=result.source,
                        destination=result.source, sha256=result.sha256, released=False,
                        error=str(error))

    def _result(self, rescan: Rescan, request: Request, flow_run_id: str | None) -> ScanResult:
        record, sub_path = rescan.record or {}, rescan.sub_path
        return ScanResult(
            file=str(record.get("file") or sub_path.as_posix()),
            account=record.get("account"), size=rescan.size, sha256=rescan.sha256,
            verdict=rescan.verdict.kind, signature=rescan.verdict.signature,
            detail=f"released from quarantine by {request.operator}: {request.reason}",
            source=f"{AREA}/{sub_path.as_posix()}", destination=f"clean/{sub_path.as_posix()}",
            area=Area.CLEAN, time=_now().isoformat(timespec="milliseconds"),
            flow_run_id=flow_run_id)

    def _audit(self, result: ScanResult, rescan: Rescan, request: Request, *, released: bool,
               why: str | None = None) -> dict[str, Any]:
        fields: Mapping[str, Any] = {
            "instance": self.config.instance_name, "released": released,
            "reason": request.reason, "operator": request.operator,
            "approver": request.approver, "forced": _forced(rescan, request),
            "quarantined_signature": (rescan.record or {}).get("signature")}
        audit = {**result.as_dict(), **fields}
        if not released:
            audit.update(destination=result.source, area=AREA, refused=why)
        return audit


def _forced(rescan: Rescan, request: Request) -> bool:
    """Whether ``--force`` overrode a detection (on a file found clean it changed nothing)."""
    return request.force and rescan.verdict.kind is not VerdictKind.CLEAN


def _move(from_fd: int, name: str, to_fd: int) -> None:
    """``name`` from one open directory to the other, never replacing (FileExistsError). A
    failure leaves the file in quarantine only: the new name is taken back."""
    try:
        os.link(name, name, src_dir_fd=from_fd, dst_dir_fd=to_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP):
            raise
        _copy(from_fd, name, to_fd)
    try:
        os.fsync(to_fd)
        os.unlink(name, dir_fd=from_fd)
    except OSError:
        os.unlink(name, dir_fd=to_fd)
        raise
    # Moved: a failure to make the removal durable is no failure of the release (at worst a
    # power cut brings the quarantine name back beside the clean file, both recorded).
    with contextlib.suppress(OSError):
        os.fsync(from_fd)


def _copy(from_fd: int, name: str, to_fd: int) -> None:
    """Across filesystems: a hidden temp copy in the target directory, published whole
    without replacing (:func:`ssftp.moves.publish`)."""
    temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    reader = os.open(name, _OPEN_FILE, dir_fd=from_fd)
    try:
        writer = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640,
                         dir_fd=to_fd)
        try:
            size, offset = os.fstat(reader).st_size, 0
            while offset < size and (sent := os.sendfile(writer, reader, offset,
                                                         size - offset)):
                offset += sent
        finally:
            os.close(writer)
    except BaseException:
        os.close(reader)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=to_fd)
        raise
    os.close(reader)
    publish(Path(temp), Path(name), replace=False, dir_fd=to_fd)


def _keep_as_history(dir_fd: int, name: str, when: datetime) -> None:
    """Rename the released file's verdict record out of the way of a new file of that name.
    A failure leaves the record where it is (the name stays reserved) and is said in the audit
    log: the file has left already."""
    try:
        os.rename(record_name(name), history_name(name, when, "released"),
                  src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        audit_event("release", logging.WARNING, file=name, record_kept=False,
                    error=exc.strerror or str(exc))
