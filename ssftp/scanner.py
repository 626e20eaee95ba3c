"""Scanning one staged file, from claim to destination: the pipeline's unit of work.

:meth:`Scanner.scan` reads top-down: claim the file (out of every client's reach), examine it
(hash it, ask clamd, check it did not change meanwhile), ask the verdict router where the
verdict sends it, and have the claim go there. It never raises for a problem with the file or
with clamd: every outcome is a :class:`ScanResult`, and anything short of a clean verdict for
exactly these bytes keeps the file out of ``clean/``.

Prefect flows call this; tests call it directly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ssftp.claims import Claim, ClaimArea
from ssftp.clamd import ClamdClient, ScanMode, Verdict, VerdictKind
from ssftp.file_stamp import FileStamp
from ssftp.layout import DataLayout
from ssftp.logs import AUDIT, log_event
from ssftp.staging_owners import StagingOwners
from ssftp.verdict_router import Area, record_content, route_for

audit_logger = logging.getLogger(AUDIT)

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ScanResult:
    """What happened to one file: the row of a run's verdict table and its audit record."""

    file: str  # staging sub path: <account dir>/<sub path>
    account: str | None
    size: int | None
    sha256: str | None
    verdict: VerdictKind
    signature: str | None
    detail: str
    source: str  # where it was staged (relative to the data root)
    destination: str  # where it is now (relative to the data root)
    area: Area
    time: str
    flow_run_id: str | None

    def as_dict(self) -> dict[str, Any]:
        # Shallow: every field is a plain value, and dataclasses.asdict's deep copy was a
        # large part of a scan's per-file cost (1.18 -> 0.82 ms per file under cProfile).
        return dict(vars(self))


@dataclass(frozen=True)
class _Examined:
    """What a scan found out about the claimed bytes (no hash when they could not be read)."""

    verdict: Verdict
    sha256: str | None = None
    size: int | None = None


def _digest(fd: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, _READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    """The ctime too: a writer can put the old mtime back, never the old ctime."""
    return (FileStamp.of(after) != FileStamp.of(before)
            or after.st_ctime_ns != before.st_ctime_ns)


class Scanner:
    """Everything one scanning process needs: where the data is, which clamd, who owns what."""

    def __init__(self, layout: DataLayout, client: ClamdClient | None, *,
                 mode: ScanMode = "auto", owners: StagingOwners, instance: str,
                 claims: ClaimArea) -> None:
        self.layout = layout
        # None when the operator switched scanning off: files pass through, marked unscanned.
        self.client = client
        self.mode = mode
        self.owners = owners
        self.instance = instance
        # One per process, shared by every scanner it builds (its slots are unique only there).
        self.claims = claims

    def scan(self, path: Path, flow_run_id: str | None = None) -> ScanResult | None:
        """Scan a staged (or orphaned claimed) file and move it on; None if it is gone."""
        claim = self.claims.claim(path)
        if claim is None:
            return None
        examined = self._examine(claim)
        try:
            result = self._move_on(claim, examined, flow_run_id)
        except OSError as exc:
            # A full disk or a vanished directory while moving: the file stays where it is (its
            # claim or staging) and is scanned again, never passed on.
            unmoved = replace(examined, verdict=Verdict(VerdictKind.ERROR,
                                                        f"could not move the file on: {exc}"))
            where = claim.path if claim.path.exists() else claim.origin
            result = self._result(claim, unmoved, flow_run_id, Area.STAGING, where)
        level = logging.WARNING if result.area is Area.STAGING else logging.INFO
        log_event(audit_logger, "scan", level, **result.as_dict(), instance=self.instance)
        return result

    def _examine(self, claim: Claim) -> _Examined:
        """The verdict, sha256 and size of exactly the bytes now at the claim."""
        try:
            # O_NONBLOCK: a FIFO dropped into staging must not hang the scanner on open.
            fd = os.open(claim.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return _Examined(Verdict(VerdictKind.UNSCANNABLE, f"cannot be opened as a file: {exc}"))
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return _Examined(Verdict(VerdictKind.UNSCANNABLE, "not a regular file"))
            if before.st_nlink > 1:
                # Another name could change these bytes after the verdict.
                return _Examined(Verdict(VerdictKind.UNSCANNABLE,
                                         f"has {before.st_nlink} hard links; only a file with "
                                         "a single name can be passed as clean"))
            sha256, size = _digest(fd)
            if self.client is None:
                return _Examined(Verdict(VerdictKind.UNSCANNED,
                                         "scanning is switched off (enableVirusScan: false)"),
                                 sha256, size)
            verdict = self.client.scan(claim.path, self.mode)
            if _changed(before, os.fstat(fd)) or size != before.st_size:
                verdict = Verdict(VerdictKind.ERROR, "the file changed while it was being scanned")
            return _Examined(verdict, sha256, size)
        except OSError as exc:
            # An I/O error reading it (a failing disk or share): worth another try later.
            return _Examined(Verdict(VerdictKind.ERROR, f"could not be read: {exc}"))
        finally:
            os.close(fd)

    def _move_on(self, claim: Claim, examined: _Examined,
                 flow_run_id: str | None) -> ScanResult:
        """Send the claimed file where its verdict says; the result says where it is now."""
        route = route_for(examined.verdict.kind, claim.sub_path, self.layout)
        if route.area is Area.STAGING:
            return self._result(claim, examined, flow_run_id, route.area, claim.release())
        if route.record is None:
            return self._result(claim, examined, flow_run_id, route.area,
                                claim.move_to(route.target))
        # Quarantine: the verdict record is this result, so it is built first and written
        # down before the file appears beside it (a failed move removes it again).
        result = self._result(claim, examined, flow_run_id, route.area, route.target)
        claim.quarantine(route.target, route.record,
                         record_content({**result.as_dict(), "instance": self.instance}))
        return result

    def _result(self, claim: Claim, examined: _Examined, flow_run_id: str | None,
                area: Area, destination: Path) -> ScanResult:
        verdict = examined.verdict
        return ScanResult(
            file=claim.sub_path.as_posix(),
            account=self.owners.owner_of(claim.sub_path),
            size=examined.size,
            sha256=examined.sha256,
            verdict=verdict.kind,
            signature=verdict.signature,
            detail=verdict.detail,
            source=self._relative(claim.origin),
            destination=self._relative(destination),
            area=area,
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            flow_run_id=flow_run_id,
        )

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()
