"""Where a verdict sends a claimed file: the decision, and the verdict record that goes with it.

Each name on the way is the file's own, or its safe name when consumers could not carry it
(:mod:`ssftp.names`): the same in ``clean/`` and ``quarantine/``.

- clean (or unscanned, when scanning is off): ``clean/<sub path>``. A newer clean upload of
  the same name replaces the older one, as a partner re-sending a file expects (a consumer
  mid-download keeps reading the old bytes).
- infected or unscannable: ``quarantine/<sub path>``, never replacing anything there (each
  quarantined file is evidence), beside a ``<name>.verdict.json`` record saying why
  (:func:`record_path`: shortened when that would not fit in a name).
- error (clamd could not answer): back to staging, to be scanned again later.

The move itself is the claim's (:class:`ssftp.scan.claims.Claim`): this module only says where, and
for quarantine reserves the name (the one thing that cannot be decided without touching disk)
by creating the verdict record, complete: a crash never leaves an empty record that keeps a
name taken for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from ssftp.layout import DataLayout
from ssftp.moves import numbered_name, write_durably
from ssftp.names import fitting, safe_sub_path
from ssftp.scan.clamd import VerdictKind

VERDICT_RECORD_SUFFIX = ".verdict.json"


class Area(StrEnum):
    CLEAN = "clean"
    QUARANTINE = "quarantine"
    # Not scanned this time: back in staging (or still claimed), to be retried.
    STAGING = "staging"


@dataclass(frozen=True)
class Route:
    area: Area
    # clean/<sub path>, a quarantine name reserved for this file alone, or staging/<sub path>.
    target: Path
    # Quarantine only: the verdict record beside ``target`` (it exists already, complete: it
    # is what reserves the name).
    record: Path | None = None


def route_for(verdict: VerdictKind, sub_path: PurePosixPath, layout: DataLayout,
              record_for: Callable[[Path], bytes]) -> Route:
    """Where a file at ``staging/<sub_path>`` goes with this verdict; ``record_for(target)``
    is the verdict record of the file if it goes to ``target`` in quarantine."""
    if verdict is VerdictKind.ERROR:
        return Route(Area.STAGING, layout.staging / sub_path)
    outward = safe_sub_path(sub_path)
    if verdict in (VerdictKind.CLEAN, VerdictKind.UNSCANNED):
        return Route(Area.CLEAN, layout.clean / outward)
    target = _reserve_quarantine_path(layout.quarantine / outward, record_for)
    return Route(Area.QUARANTINE, target, record_path(target))


def record_content(record: dict[str, object]) -> bytes:
    """A verdict record's bytes: ASCII-escaped JSON, as names may not be UTF-8."""
    return json.dumps(record, indent=2).encode()


def record_path(target: Path) -> Path:
    """The verdict record beside a quarantined file: ``<name>.verdict.json``, or, when that is
    longer than a name may be, the name shortened and told apart by its hash."""
    return target.with_name(fitting(target.name, VERDICT_RECORD_SUFFIX))


def _reserve_quarantine_path(target: Path, record_for: Callable[[Path], bytes]) -> Path:
    """``target``, or ``name (2).ext`` ... when that name is taken, reserved by creating its
    record exclusively (written whole to a temp name, then linked, which refuses a name that
    exists): two scans (threads, instances) can never pick the same name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = target, 1
    while True:
        if not candidate.exists():
            record = record_path(candidate)
            try:
                write_durably(record, record_for(candidate), replace=False)
            except FileExistsError:
                pass
            else:
                if not candidate.exists():
                    return candidate
                # A file without a record took the name meanwhile: the empty record is not its.
                record.unlink()
        number += 1
        candidate = numbered_name(target, number)
