"""Scanning one staged file, from claim to destination: the pipeline's unit of work.

:meth:`Scanner.scan` reads top-down: claim the file (out of every client's reach), examine it
(hash it, ask clamd, check it did not change meanwhile), route it (where the verdict sends it;
in quarantine, a name reserved by its verdict record), record the outcome, and have the claim
go there. It never raises for a problem with the file, with clamd or with the audit log: every
outcome is a :class:`ScanResult`, and anything short of a clean verdict for exactly these bytes
keeps the file out of ``clean/``.

The record comes before the move (:mod:`ssftp.scan.record`): the audit record and what the
outcome owes, so a crash after the move cannot lose them. A record that could not be stored
stops the move: the file goes back to staging and is scanned again. A move that fails after
the record gets a second record. Every outcome is recorded through the same port, which also
names the Prefect event the outcome raises (:attr:`ScanResult.event`).

Prefect flows call this; tests call it directly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ssftp.config.schema import ScanMode
from ssftp.errors import AuditLogError, OutboxError
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event, one_line, warn_on_stderr
from ssftp.metrics import SCAN_SECONDS, SCANS
from ssftp.names import safe_sub_path
from ssftp.scan.claims import Claim, Claims, reserve_quarantine
from ssftp.scan.engines import Engine
from ssftp.scan.examine import Examined, examine
from ssftp.scan.owners import StagingOwners
from ssftp.scan.record import AuditRecorder, Recorder
from ssftp.scan.results import Area, ScanResult, stamp
from ssftp.scan.router import record_path, route_for
from ssftp.scan.verdict import VerdictKind
from ssftp.scan.workers import default_name

logger = logging.getLogger(APP)


def _where_now(claim: Claim) -> Path:
    """Where a file that could not be moved on is: still claimed, or back in staging."""
    return claim.path if claim.path.exists() else claim.origin


def _count(result: ScanResult, staged_at: float | None) -> None:
    """The scan metrics: every attempt by its verdict, and for a file that left staging the
    time since it was staged (:attr:`Claim.staged_at`)."""
    SCANS.labels(verdict=result.verdict.value).inc()
    if result.area is not Area.STAGING and staged_at is not None:
        SCAN_SECONDS.observe(max(0.0, time.time() - staged_at))


class Scanner:
    """Everything one scanning process needs: where the data is, which clamd, who owns what."""

    def __init__(self, layout: DataLayout, client: Engine | None, *,
                 mode: ScanMode = "auto", owners: StagingOwners, instance: str,
                 claims: Claims, recorder: Recorder | None = None,
                 worker: str | None = None) -> None:
        self.layout = layout
        # None when the operator switched scanning off: files pass through, marked unscanned.
        self.client = client
        self.mode = mode
        self.owners = owners
        self.instance = instance
        # One per process, shared by every scanner it builds (its slots are unique only there).
        self.claims = claims
        # Where each outcome is recorded, before the file moves.
        self.recorder = recorder or AuditRecorder()
        # Who judged: on every outcome, the runs' tags and the records (ssftp.scan.workers).
        self.worker = worker or default_name()

    def scan(self, path: Path, flow_run_id: str | None = None) -> ScanResult | None:
        """Scan a staged (or orphaned claimed) file and move it on; None if it is gone."""
        try:
            claim = self.claims.claim(path)
        except OSError as exc:
            return self._unclaimed(path, flow_run_id, exc)
        if claim is None:
            return None
        examined = examine(claim.path, self.client, self.mode,
                           self.owners.policy_for(claim.sub_path))
        if examined.verdict.timed_out:
            self._log_timeout(examined, claim)
        result = self._settle(claim, examined, flow_run_id)
        _count(result, claim.staged_at)
        return result

    def _log_timeout(self, examined: Examined, claim: Claim) -> None:
        """One line per scan that waited out an engine's timeout (its detail names the engine,
        its address and the seconds): a hung engine is otherwise silent, and the engine, which
        sees a descriptor, cannot name the file."""
        log_event(logger, "scan timed out", logging.WARNING, file=self._relative(claim.origin),
                  detail=examined.verdict.detail)

    def _settle(self, claim: Claim, examined: Examined, flow_run_id: str | None) -> ScanResult:
        """Route the verdict, record it, and move the file there (or back to staging)."""
        route = route_for(examined.verdict.kind, claim.sub_path, self.layout)
        if route.area is Area.STAGING:
            return self._back_to_staging(claim, examined, flow_run_id)
        when = stamp()
        try:
            target = (self._reserve_quarantine(claim, examined, flow_run_id, route.target, when)
                      if route.area is Area.QUARANTINE else route.target)
        except OSError as exc:  # the quarantine name could not be reserved (a full disk)
            return self._unmoved(claim, examined, flow_run_id, exc)
        result = self._result(claim, examined, flow_run_id, route.area, target, when)
        try:
            event = self.recorder.record(result, self._record(result))
        except (AuditLogError, OutboxError) as exc:
            return self._unrecorded(claim, examined, flow_run_id, result, exc)
        try:
            self._move_on(claim, result.area, target)
        except OSError as exc:
            return self._unmoved(claim, examined, flow_run_id, exc)
        return replace(result, event=event)

    def _reserve_quarantine(self, claim: Claim, examined: Examined, flow_run_id: str | None,
                            wished: Path, when: str) -> Path:
        """A quarantine name for the file, reserved by the verdict record it will have."""
        return reserve_quarantine(wished, lambda target: self._record(self._result(
            claim, examined, flow_run_id, Area.QUARANTINE, target, when)))

    @staticmethod
    def _move_on(claim: Claim, area: Area, target: Path) -> None:
        """Send the claimed file to clean/ or quarantine/, as its (written) record says."""
        if area is Area.QUARANTINE:  # beside its verdict record, which reserved the name
            claim.quarantine(target, record_path(target))
        else:
            claim.move_to(target)

    def _back_to_staging(self, claim: Claim, examined: Examined,
                         flow_run_id: str | None) -> ScanResult:
        """Release a file that was not scanned this time (clamd failed), to be retried."""
        try:
            where = claim.release()
        except OSError as exc:
            return self._unmoved(claim, examined, flow_run_id, exc)
        return self._stays(self._result(claim, examined, flow_run_id, Area.STAGING, where))

    def _unmoved(self, claim: Claim, examined: Examined, flow_run_id: str | None,
                 error: OSError) -> ScanResult:
        """A full disk or a vanished directory while moving: the file stays where it is (its
        claim or staging) and is scanned again, never passed on."""
        stays = examined.failed(f"could not move the file on: {error}")
        return self._stays(self._result(claim, stays, flow_run_id, Area.STAGING,
                                        _where_now(claim)))

    def _unrecorded(self, claim: Claim, examined: Examined, flow_run_id: str | None,
                    moving: ScanResult, error: AuditLogError | OutboxError) -> ScanResult:
        """The record of a move, or a webhook it owes, could not be stored: no move, back to
        staging, retried.

        The one line on stderr is the report (the audit log may be what failed), so the record
        of this outcome is written where it still can be, quietly.
        """
        if moving.area is Area.QUARANTINE:  # the reserved quarantine name is not used
            record_path(self.layout.root / moving.destination).unlink(missing_ok=True)
        warn_on_stderr(f"{moving.file} is not moved to {moving.area}/ and will be scanned "
                       f"again: {error}")
        stays = examined.failed(f"not moved to {moving.area}/: {error}")
        try:
            where = claim.release()
        except OSError:
            where = _where_now(claim)
        return self._stays(self._result(claim, stays, flow_run_id, Area.STAGING, where),
                           quiet=True)

    def _unclaimed(self, path: Path, flow_run_id: str | None, error: OSError) -> ScanResult:
        """The file could not be taken out of staging (a path longer than the system allows
        under the claims, a directory it may not write): it stays, and is tried again."""
        sub_path = self.claims.sub_path_of(path)
        result = ScanResult(
            file=sub_path.as_posix(), account=self.owners.owner_of(sub_path), size=None,
            sha256=None, verdict=VerdictKind.ERROR, signature=None,
            detail=f"could not be claimed for scanning: {error.strerror or error}",
            source=self._relative(self.layout.staging / sub_path),
            destination=self._relative(path), area=Area.STAGING, time=stamp(),
            flow_run_id=flow_run_id, worker=self.worker)
        return self._stays(result)

    def _stays(self, result: ScanResult, *, quiet: bool = False) -> ScanResult:
        """Record the outcome of a file left in staging (a failure of the record is told, and
        gates nothing)."""
        return replace(result, event=self.recorder.record(result, self._record(result),
                                                          quiet=quiet))

    def _record(self, result: ScanResult) -> dict[str, Any]:
        """The audit record of a result (and a quarantined file's verdict record)."""
        return {**result.as_dict(), "instance": self.instance}

    def _result(self, claim: Claim, examined: Examined, flow_run_id: str | None,
                area: Area, destination: Path, when: str | None = None) -> ScanResult:
        renamed = area is not Area.STAGING and safe_sub_path(claim.sub_path) != claim.sub_path
        return ScanResult(
            file=claim.sub_path.as_posix(),
            account=self.owners.owner_of(claim.sub_path),
            source=self._relative(claim.origin),
            destination=self._relative(destination),
            area=area,
            time=when or stamp(),
            flow_run_id=flow_run_id,
            original_name=one_line(claim.sub_path.as_posix()) if renamed else None,
            worker=self.worker,
            **examined.judged(),
        )

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()
