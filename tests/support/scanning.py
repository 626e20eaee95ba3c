"""Scanning in tests: files staged by hand, a Scanner over the test's data root, and the
limits of the session's real clamd (the ``clamd`` fixture)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

from ssftp.layout import DataLayout
from ssftp.scan.claims import (
    Claims,
    process_owner,
)
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from ssftp.scan.record import Recorder
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.scanner import Scanner
from ssftp.scan.verdict import VerdictKind
from testkit.files import EICAR

# clamd's MaxFileSize in the session's clamd: a file over it is never clean.
CLAMD_MAX_FILE_SIZE = 10 * 1024 * 1024
# The ways the scanner asks clamd (ScanMode), and the client's three scan calls.
MODES = ["auto", "path", "fd", "stream"]
CLIENT_MODES = ["scan_path", "scan_fd", "scan_stream"]
# A sub path with what names in the wild hold: spaces, a colon, accents, a symbol.
ODD_SUB_PATH = "partner-a/in dir/Q1: rapport ünï ✓.txt"


def write(path: Path, data: bytes) -> Path:
    """``data`` at ``path``, its directories made as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def stage(layout: DataLayout, sub_path: str, data: bytes) -> Path:
    return write(layout.staging / sub_path, data)


def files_under(directory: Path) -> list[Path]:
    """Every file (or symlink) below ``directory``, sorted."""
    return sorted(p for p in directory.rglob("*") if p.is_file() or p.is_symlink())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dead_owner() -> str:
    """The owner name of a process of this host that has finished (a scanner that died)."""
    proc = subprocess.Popen(["true"])
    owner = process_owner(proc.pid)  # read while the child exists (running or a zombie)
    proc.wait()
    assert not owner.endswith(".0"), "the start time of the live child must have been read"
    return owner


def free_closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_scanner(layout: DataLayout, client: ClamdClient | None, owners: StagingOwners,
                 mode: str = "auto", recorder: Recorder | None = None,
                 worker: str | None = None) -> Scanner:
    return Scanner(layout, client, mode=mode, owners=owners, instance="gw-test",
                   claims=Claims(layout.staging), recorder=recorder, worker=worker)


def non_utf8_path(directory: Path, name: bytes) -> Path:
    """A file name that is not valid UTF-8 (e.g. Latin-1 from a cp onto the share)."""
    return Path(os.fsdecode(os.fsencode(directory) + b"/" + name))


def scan_result(verdict: str = "infected", **changes) -> ScanResult:
    """The result of scanning EICAR (or another verdict's file) as the scanner records it."""
    values = {
        "file": "partner-a/eicar.com", "account": "partner-a", "size": 68,
        "sha256": sha256(EICAR),
        "verdict": VerdictKind(verdict),
        "signature": "Ssftp.Test.EICAR-HDB.UNOFFICIAL" if verdict == "infected" else None,
        "detail": "Ssftp.Test.EICAR-HDB.UNOFFICIAL FOUND",
        "source": "staging/partner-a/eicar.com",
        "destination": f"{AREA_OF[verdict]}/partner-a/eicar.com",
        "area": AREA_OF[verdict], "time": "2026-01-01T00:00:00.000+00:00",
        "flow_run_id": "run-7",
    }
    values.update(changes)
    return ScanResult(**values)


# Where a scan sends a file with each verdict.
AREA_OF = {"clean": Area.CLEAN, "unscanned": Area.CLEAN, "infected": Area.QUARANTINE,
           "unscannable": Area.QUARANTINE, "blocked": Area.QUARANTINE, "error": Area.STAGING}
