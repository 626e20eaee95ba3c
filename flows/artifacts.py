"""The artifacts a run keeps up to date under a fixed key (the Prefect UI's Artifacts page shows
each key's latest version): their keys, and the table of what is in quarantine now.

The quarantine table, ``quarantine-<instanceName>``: a run's own verdict tables show only that
run's files, so right after an infection the page's latest ``scan-summary`` could read "1
clean". This one is the whole quarantine (the newest ``QUARANTINE_ROWS``, the rest counted),
published by every run that puts files into quarantine or takes them out: scan, rescan,
release and retention runs. ``ssftp quarantine delete`` is no run: the table catches up with
the next of those.
"""

from __future__ import annotations

import asyncio
import re

from prefect.artifacts import acreate_table_artifact

from ssftp.areas.quarantine import entries
from ssftp.layout import DataLayout
from ssftp.logs import one_line

QUARANTINE_ROWS = 500


def artifact_key(kind: str, name: str) -> str:
    """``<kind>-<name>``: artifact keys allow lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def quarantine_rows(layout: DataLayout) -> tuple[list[dict[str, object]], int]:
    """The newest files in quarantine first, at most ``QUARANTINE_ROWS``, and how many there
    are in all."""
    found = sorted(entries(layout), key=lambda entry: entry.time, reverse=True)
    rows: list[dict[str, object]] = []
    for entry in found[:QUARANTINE_ROWS]:
        fields = entry.as_dict()
        rows.append({"time": entry.time, "account": one_line(fields["account"] or ""),
                     "file": one_line(fields["file"]), "verdict": fields["verdict"] or "",
                     "signature": one_line(fields["signature"] or ""),
                     "sha256": fields["sha256"] or ""})
    return rows, len(found)


async def publish_quarantine_table(layout: DataLayout, instance: str) -> None:
    rows, total = await asyncio.to_thread(quarantine_rows, layout)
    description = (f"{total} file(s) in quarantine now" if total else "quarantine is empty")
    if total > len(rows):
        description += f"; the newest {len(rows)} shown (`ssftp quarantine list` has all)"
    await acreate_table_artifact(table=rows, key=artifact_key("quarantine", instance),
                                 description=description)
