"""Record: the step between a file's route and its move, through one port.

The scanner hands every outcome to a :class:`Recorder` before it moves the file. The recorder
stores the audit record and whatever else the outcome owes (a worker's: the webhooks, in the
outbox, :class:`ssftp.notify.record.OutboxRecorder`) and says which Prefect event the outcome
raises. For a file about to leave staging the record gates the move: the recorder raises, and
the file stays to be scanned again, so no file is in ``clean/`` or ``quarantine/`` without its
record and its notifications. For a file that stays where it is (in staging, or in clean/ after a
rescan) nothing is gated: the recorder stores what it can.

A port, so that scan/ stays below notify/: what an outcome owes is notify's rule, plugged in by
whoever builds the scanner.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from ssftp.errors import AuditLogError
from ssftp.logs import warn_on_stderr, write_audit_event
from ssftp.scan.results import ScanResult
from ssftp.scan.verdict import VerdictKind


class Recorder(Protocol):
    def record(self, result: ScanResult, audit: Mapping[str, object], *,
               quiet: bool = False) -> str | None:
        """Store ``result``'s audit record (``audit``) and what it owes; return the Prefect
        event its outcome raises, if any.

        A result that leaves staging raises AuditLogError or OutboxError when either could
        not be stored. One that stays never raises: what could not be stored is said on
        stderr (not when ``quiet``: the caller has said it already) or in the log.
        """
        ...


def write_audit(result: ScanResult, audit: Mapping[str, object], *, quiet: bool) -> None:
    """The audit record of ``result``, as :meth:`Recorder.record` promises it: a warning for a
    file left where it was short of a clean verdict."""
    if not result.stays:
        write_audit_event(result.reason, logging.INFO, **audit)
        return
    passed = result.verdict in (VerdictKind.CLEAN, VerdictKind.UNSCANNED)
    try:
        write_audit_event(result.reason, logging.INFO if passed else logging.WARNING, **audit)
    except AuditLogError as exc:
        if not quiet:
            warn_on_stderr(f"scan: {exc}")


class AuditRecorder:
    """The recorder of a scanner whose outcomes owe nothing but their audit record (``ssftp
    scan``, tests): no webhooks, and no Prefect to tell."""

    def record(self, result: ScanResult, audit: Mapping[str, object], *,
               quiet: bool = False) -> str | None:
        write_audit(result, audit, quiet=quiet)
        return None
