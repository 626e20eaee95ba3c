"""Scanning one staged file, from claim to destination: the pipeline's unit of work.

:meth:`Scanner.scan` claims the file (out of every client's reach), hashes it, asks clamd,
checks the file did not change meanwhile, and moves it where the verdict says. It never raises
for a problem with the file or with clamd: every outcome is a :class:`ScanResult`, and anything
short of a clean verdict for exactly these bytes keeps the file out of ``clean/``.

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
from ssftp.verdict_router import Area, area_for, route

audit_logger = logging.getLogger(AUDIT)

_READ_CHUNK = 1 << 20
# Shown as the verdict when the operator switched scanning off (``enableVirusScan: false``).
UNSCANNED = "unscanned"


@dataclass(frozen=True)
class ScanResult:
    """What happened to one file: the row of a run's verdict table and its audit record."""

    file: str  # staging sub path: <account dir>/<sub path>
    account: str | None
    size: int | None
    sha256: str | None
    verdict: str  # a VerdictKind value, or "unscanned"
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

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    def _verdict(self, claim: Claim) -> tuple[Verdict | None, str | None, int | None]:
        """(verdict, sha256, size) for exactly the bytes now at the claim (None: unscanned)."""
        try:
            # O_NONBLOCK: a FIFO dropped into staging must not hang the scanner on open.
            fd = os.open(claim.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            unreadable = Verdict(VerdictKind.UNSCANNABLE, f"cannot be opened as a file: {exc}")
            return unreadable, None, None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Verdict(VerdictKind.UNSCANNABLE, "not a regular file"), None, None
            if before.st_nlink > 1:
                # Another name could change these bytes after the verdict.
                return (Verdict(VerdictKind.UNSCANNABLE,
                                f"has {before.st_nlink} hard links; only a file with a single "
                                "name can be passed as clean"), None, None)
            sha256, size = _digest(fd)
            if self.client is None:
                return None, sha256, size
            verdict = self.client.scan(claim.path, self.mode)
            if _changed(before, os.fstat(fd)) or size != before.st_size:
                return (Verdict(VerdictKind.ERROR, "the file changed while it was being scanned"),
                        sha256, size)
            return verdict, sha256, size
        finally:
            os.close(fd)

    def _result(self, claim: Claim, verdict: Verdict | None, sha256: str | None,
                size: int | None, flow_run_id: str | None, destination: Path) -> ScanResult:
        return ScanResult(
            file=claim.sub_path.as_posix(),
            account=self.owners.owner_of(claim.sub_path),
            size=size,
            sha256=sha256,
            verdict=UNSCANNED if verdict is None else verdict.kind.value,
            signature=None if verdict is None else verdict.signature,
            detail=("scanning is switched off (enableVirusScan: false)" if verdict is None
                    else verdict.detail),
            source=self._relative(claim.origin),
            destination=self._relative(destination),
            area=Area.CLEAN if verdict is None else area_for(verdict.kind),
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            flow_run_id=flow_run_id,
        )

    def scan(self, path: Path, flow_run_id: str | None = None) -> ScanResult | None:
        """Scan a staged (or orphaned claimed) file and move it on; None if it is gone."""
        claim = self.claims.claim(path)
        if claim is None:
            return None
        sha256, size = None, None
        try:
            verdict, sha256, size = self._verdict(claim)
            planned = self._result(claim, verdict, sha256, size, flow_run_id, claim.origin)
            kind = VerdictKind.CLEAN if verdict is None else verdict.kind
            destination = route(claim, kind, self.layout, self.claims,
                                {**planned.as_dict(), "instance": self.instance})
            result = replace(planned, destination=self._relative(destination))
        except OSError as exc:
            # A full disk or a vanished directory while moving: the file stays where it is (its
            # claim or staging) and is scanned again, never passed on.
            verdict = Verdict(VerdictKind.ERROR, f"could not move the file on: {exc}")
            destination = claim.path if claim.path.exists() else claim.origin
            result = self._result(claim, verdict, sha256, size, flow_run_id, destination)
        level = logging.WARNING if result.area is Area.STAGING else logging.INFO
        log_event(audit_logger, "scan", level, **result.as_dict(), instance=self.instance)
        return result
