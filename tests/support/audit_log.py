"""Audit logs written by hand, spelt as the running gateway spells them (its own formatter): one
file's life across its names, another file's lines, and a chain of two instances."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

from ssftp.audit_history import (
    AuditSource,
    audit_logs,
)
from ssftp.logs import AUDIT, JsonLinesFormatter

SHA_X = "a1" * 32
SHA_X2 = "b2" * 32
SHA_Y = "a1" * 6 + "c3" * 26  # shares its first 12 digits with SHA_X
_FORMATTER = JsonLinesFormatter()


def audit_line(event: str, level: int = logging.INFO, /, **fields: Any) -> str:
    """A record as write_audit_event writes it."""
    record = logging.getLogger(AUDIT).makeRecord(AUDIT, level, __file__, 0, event, (), None,
                                                 extra={"fields": fields})
    return _FORMATTER.format(record) + "\n"


def scan(root: Path, file: str, sha256: str, verdict: str, destination: str,
         signature: str | None = None, flow_run_id: str = "run-1") -> str:
    return audit_line("scan", file=file, account="acme", size=68, sha256=sha256, verdict=verdict,
                      signature=signature, detail="", source=f"staging/{file}",
                      destination=destination, area=destination.partition("/")[0],
                      time="2026-12-01T12:00:00", flow_run_id=flow_run_id, instance="a")


def x_history(root: Path) -> list[str]:
    """The life of acme/in/x.dat: fetched, a failed scan, clean, its webhook, sent onward."""
    return [
        audit_line("download", downloader="partner", remote="/out/x.dat",
                   file=f"{root}/staging/acme/in/x.dat", size=68, flow_run_id="dl-run"),
        scan(root, "acme/in/x.dat", SHA_X, "error", "staging/acme/in/x.dat"),
        scan(root, "acme/in/x.dat", SHA_X, "clean", "clean/acme/in/x.dat", flow_run_id="run-2"),
        audit_line("webhook", file="acme/in/x.dat", webhook="clean", url="http://h/",
                   delivered=True, event_id="e1", flow_run_id="notify-run"),
        audit_line("upload", uploader="onward", file="acme/in/x.dat", remote="h:22/x.dat",
                   size=68, archived=f"{root}/uploadarchive/acme/in/x.dat",
                   flow_run_id="ul-run"),
    ]


def others(root: Path) -> list[str]:
    """Other files: infected acme/in/y.dat, and one whose name contains x.dat's."""
    return [
        scan(root, "acme/in/y.dat", SHA_Y, "infected", "quarantine/acme/in/y.dat",
             signature="Eicar-Test-Signature"),
        audit_line("webhook", file="acme/in/y.dat", webhook="infected", url="http://h/",
                   delivered=False, event_id="e2", flow_run_id="notify-run"),
        scan(root, "acme/in/x.dat.old", SHA_X2, "clean", "clean/acme/in/x.dat.old"),
    ]


def write_log(root: Path, lines: list[str], name: str = "audit.log") -> Path:
    log = root / "log"
    log.mkdir(parents=True, exist_ok=True)
    path = log / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as file:
            file.writelines(lines)
    else:
        path.write_text("".join(lines))
    return path


def events(records: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(record["event"], record.get("verdict")) for record in records]


X_EVENTS = [("download", None), ("scan", "error"), ("scan", "clean"), ("webhook", None),
            ("upload", None)]


def timed(lines: list[str], minute: int, instance: str) -> list[str]:
    """The records one second apart from ``12:<minute>:00``, and scans naming ``instance``,
    as that instance writes them."""
    records = [json.loads(line) for line in lines]
    for second, record in enumerate(records):
        record["time"] = f"2026-12-01T12:{minute:02d}:{second:02d}.000+00:00"
        if "instance" in record:
            record["instance"] = instance
    return [json.dumps(record) + "\n" for record in records]


def chained(a_root: Path, b_root: Path) -> list[AuditSource]:
    """acme/in/x.dat's life on A (x_history), then on B, where it arrived as from-a/x.dat:
    scanned, its webhook; and another file of B's under x.dat's name on A."""
    write_log(a_root, timed(x_history(a_root), 0, "a"))
    write_log(b_root, timed([
        scan(b_root, "from-a/x.dat", SHA_X, "clean", "clean/from-a/x.dat", flow_run_id="b-run"),
        audit_line("webhook", file="from-a/x.dat", webhook="clean", url="http://h/",
                   delivered=True, event_id="b1", flow_run_id="b-notify"),
        scan(b_root, "acme/in/x.dat", SHA_X2, "clean", "clean/acme/in/x.dat"),
    ], 1, "b"))
    return [AuditSource(audit_logs(a_root / "log"), a_root, "a"),
            AuditSource(audit_logs(b_root / "log"), b_root, "b")]
