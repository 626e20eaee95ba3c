"""Where a verdict sends a claimed file: a decision on names alone, no disk touched.

Each name on the way is the file's own, or its safe name when consumers could not carry it
(:mod:`ssftp.names`): the same in ``clean/`` and ``quarantine/``.

- clean (or unscanned, when scanning is off): ``clean/<sub path>``. A newer clean upload of
  the same name replaces the older one, as a partner re-sending a file expects (a consumer
  mid-download keeps reading the old bytes).
- infected, unscannable or blocked: ``quarantine/<sub path>``, never replacing anything there (each
  quarantined file is evidence): the first of :func:`quarantine_names` that the scanner can
  reserve, beside a ``<name>.verdict.json`` record saying why (:func:`record_path`: shortened
  when that would not fit in a name).
- error (clamd could not answer): back to staging, to be scanned again later.

The reservation and the move are the claim's (:mod:`ssftp.scan.claims`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ssftp.layout import DataLayout
from ssftp.moves import numbered_name
from ssftp.names import fitting, safe_sub_path
from ssftp.scan.results import Area
from ssftp.scan.verdict import VerdictKind

VERDICT_RECORD_SUFFIX = ".verdict.json"


@dataclass(frozen=True)
class Route:
    area: Area
    # clean/<sub path>, quarantine/<sub path> (or the name reserved instead), or
    # staging/<sub path>.
    target: Path


def route_for(verdict: VerdictKind, sub_path: PurePosixPath, layout: DataLayout) -> Route:
    """Where a file at ``staging/<sub_path>`` goes with this verdict; in quarantine, the name
    it would like (the first of :func:`quarantine_names`)."""
    if verdict is VerdictKind.ERROR:
        return Route(Area.STAGING, layout.staging / sub_path)
    outward = safe_sub_path(sub_path)
    if verdict in (VerdictKind.CLEAN, VerdictKind.UNSCANNED):
        return Route(Area.CLEAN, layout.clean / outward)
    return Route(Area.QUARANTINE, layout.quarantine / outward)


def quarantine_names(target: Path) -> Iterator[Path]:
    """``target``, then ``name (2).ext``, ``name (3).ext`` ...: the names a quarantined file
    may take, in order, as none replaces another."""
    yield target
    for number in itertools.count(2):
        yield numbered_name(target, number)


def record_content(record: dict[str, object]) -> bytes:
    """A verdict record's bytes: ASCII-escaped JSON, as names may not be UTF-8."""
    return json.dumps(record, indent=2).encode()


def record_path(target: Path) -> Path:
    """The verdict record beside a quarantined file: ``<name>.verdict.json``, or, when that is
    longer than a name may be, the name shortened and told apart by its hash."""
    return target.with_name(fitting(target.name, VERDICT_RECORD_SUFFIX))
