"""Where a claimed file goes once it has a verdict, and the move that takes it there.

- clean: ``clean/<sub path>``. A newer clean upload of the same name replaces the older one,
  as a partner re-sending a file expects (a consumer mid-download keeps reading the old bytes).
- infected or unscannable: ``quarantine/<sub path>``, never replacing anything there (each
  quarantined file is evidence), beside a ``<name>.verdict.json`` record saying why.
- error (clamd could not answer): back to staging, to be scanned again later.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from ssftp.claims import Claim, ClaimArea
from ssftp.clamd import VerdictKind
from ssftp.layout import DataLayout
from ssftp.moves import move_atomically, numbered_name, write_durably

VERDICT_RECORD_SUFFIX = ".verdict.json"


class Area(StrEnum):
    CLEAN = "clean"
    QUARANTINE = "quarantine"
    # Not scanned this time: back in staging (or still claimed), to be retried.
    STAGING = "staging"


def area_for(verdict: VerdictKind) -> Area:
    if verdict is VerdictKind.CLEAN:
        return Area.CLEAN
    if verdict is VerdictKind.ERROR:
        return Area.STAGING
    return Area.QUARANTINE


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + VERDICT_RECORD_SUFFIX)


def _reserve_quarantine_path(target: Path) -> Path:
    """``target``, or ``name (2).ext`` ... when that name is taken, reserved by creating its
    record exclusively: two scans (threads, instances) can never pick the same name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = target, 1
    while True:
        if not candidate.exists():
            record = _record_path(candidate)
            try:
                os.close(os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                 0o640))
            except FileExistsError:
                pass
            else:
                if not candidate.exists():
                    return candidate
                # A file without a record took the name meanwhile: the empty record is not its.
                record.unlink()
        number += 1
        candidate = numbered_name(target, number)


def route(claim: Claim, verdict: VerdictKind, layout: DataLayout, claims: ClaimArea,
          record: dict[str, Any]) -> Path:
    """Move a claimed file where its verdict sends it; returns where it is now.

    ``record`` is the verdict record kept beside a quarantined file (its ``destination`` is
    filled in here, where the quarantine name is chosen).
    """
    area = area_for(verdict)
    if area is Area.STAGING:
        return claims.release(claim)
    if area is Area.CLEAN:
        target = layout.clean / claim.sub_path
        move_atomically(claim.path, target)
    else:
        target = _reserve_quarantine_path(layout.quarantine / claim.sub_path)
        destination = target.relative_to(layout.root).as_posix()
        # The record is complete before the file appears, so a quarantined file always has
        # one (a crash in between leaves a record whose file is still claimed and rescanned).
        # ASCII-escaped JSON: names may not be UTF-8.
        write_durably(_record_path(target),
                      json.dumps({**record, "destination": destination}, indent=2).encode(),
                      replace=True)
        try:
            move_atomically(claim.path, target)
        except OSError:
            _record_path(target).unlink(missing_ok=True)
            raise
    claims.done(claim)
    return target
