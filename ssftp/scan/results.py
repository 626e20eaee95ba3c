"""What a scan did with one file: where it went (:class:`Area`) and its :class:`ScanResult`,
the row of a run's verdict table and the fields of its audit record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from ssftp.scan.policy import NOT_INSPECTED
from ssftp.scan.verdict import VerdictKind


class Area(StrEnum):
    CLEAN = "clean"
    QUARANTINE = "quarantine"
    # Not scanned this time: back in staging (or still claimed), to be retried.
    STAGING = "staging"
    # A delivered file's copy, looked at again only by a rescan that includes it.
    UPLOADARCHIVE = "uploadarchive"


# Why a file was scanned: it arrived (staging), or the signatures changed since its verdict
# (or an operator asked) and it is looked at again where it is (ssftp.scan.rescan).
Reason = Literal["scan", "rescan"]


@dataclass(frozen=True)
class ScanResult:
    """What happened to one file: the row of a run's verdict table and its audit record."""

    file: str  # sub path in its area: <account dir>/<sub path>
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
    # The verdict is an error because clamd could not be reached (see ``Verdict.unreachable``).
    clamd_unreachable: bool = False
    # The staging sub path, escaped (``caf\\xe9.txt``), when the file left staging under a
    # safe name of its own (ssftp.names): what its writer called it.
    original_name: str | None = None
    # The engine and database that judged it (ssftp.scan.signatures): "ClamAV 1.4.6" and
    # "27480+3f9a1c2b0d4e"; None when no clamd was asked.
    engine: str | None = None
    database: str | None = None
    reason: Reason = "scan"
    # False for a file passed without any engine looking inside (an encrypted file its owner
    # allows: ssftp.scan.policy).
    inspected: bool = True
    # Each engine's own answer when several judged (``{"clamd": "OK", "icap": "..."}``:
    # ssftp.scan.engines); None when one engine (or none) did.
    engines: dict[str, str] | None = None
    # The worker that judged it (ssftp.scan.workers); None for an outcome no worker made (a
    # release from quarantine, done by the operator's command).
    worker: str | None = None
    # The Prefect event the outcome raises (ssftp.notify.owed), for the scan flow to emit;
    # None when it raises none, or no Prefect is told (``ssftp scan``).
    event: str | None = None

    @property
    def verdict_label(self) -> str:
        """The verdict as tables and lists show it: ``clean (encrypted, not inspected)`` for a
        clean file nobody looked inside."""
        return self.verdict.value if self.inspected else NOT_INSPECTED

    @property
    def stays(self) -> bool:
        """Left where it was: a staged file not passed on this time, or a handed-on file a
        rescan left in place. Nothing is gated on such a result's record."""
        if self.reason == "rescan":
            return self.source == self.destination
        return self.area is Area.STAGING

    def as_dict(self) -> dict[str, Any]:
        """The audit record's fields (and a quarantined file's verdict record's): all but the
        event, which is Prefect's news, not the file's history."""
        # Shallow: every field is a plain value, and dataclasses.asdict's deep copy was a
        # large part of a scan's per-file cost (1.18 -> 0.82 ms per file under cProfile).
        fields = dict(vars(self))
        del fields["event"]
        return fields


def stamp() -> str:
    """The time a result is stamped with (its ``time``): UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
