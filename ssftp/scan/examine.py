"""Examine: the verdict, sha256 and size of exactly the bytes a name holds, never a raise.

The scanner examines a claimed staged file; the rescan a file already handed on, in place.
Either way what is decided about the file holds for the bytes that were hashed and scanned, and
for the name they were found under: a file that changed during the scan, or a name that meanwhile
holds another file, is an error verdict (scanned again), never passed on.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ssftp.config.schema import ScanMode
from ssftp.file_stamp import FileStamp, sha256_of
from ssftp.moves import proc_path
from ssftp.scan.engines import Engine
from ssftp.scan.filetypes import file_type
from ssftp.scan.policy import ContentPolicy
from ssftp.scan.signatures import Signatures
from ssftp.scan.verdict import Verdict, VerdictKind

# No rule of its own: encrypted files unscannable, any type.
NO_POLICY = ContentPolicy()


@dataclass(frozen=True)
class Examined:
    """What a scan found out about the bytes (no hash when they could not be read)."""

    verdict: Verdict
    sha256: str | None = None
    size: int | None = None
    # What clamd judged with (None when it was not asked, or could not say).
    signatures: Signatures | None = None
    # The file examined, (st_dev, st_ino): what a later move must still be moving.
    identity: tuple[int, int] | None = None
    # It changed while it was scanned (or its name came to hold another file): the verdict
    # is an error, and another look may find it settled.
    changed: bool = False

    def judged(self) -> dict[str, Any]:
        """The :class:`~ssftp.scan.results.ScanResult` fields that say what was found and by
        whom, the same for a scan, a rescan and a release."""
        verdict, signatures = self.verdict, self.signatures
        return {"size": self.size, "sha256": self.sha256, "verdict": verdict.kind,
                "signature": verdict.signature, "detail": verdict.detail,
                "clamd_unreachable": verdict.unreachable, "inspected": verdict.inspected,
                "engines": dict(verdict.engines) if len(verdict.engines) > 1 else None,
                "engine": None if signatures is None else signatures.engine,
                "database": None if signatures is None else signatures.database}

    def failed(self, detail: str) -> Examined:
        """The same bytes, with an error verdict: not passed on this time, scanned again."""
        return replace(self, verdict=Verdict(VerdictKind.ERROR, detail))


def still_named(path: Path, identity: tuple[int, int]) -> bool:
    """``path`` still names the file of ``identity``: files are moved on by name, so the
    name must hold what was scanned (another writer on the share may have swapped a directory
    on the way, which leaves the file's own stat untouched)."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == identity


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    """The ctime too: a writer can put the old mtime back, never the old ctime."""
    return (FileStamp.of(after) != FileStamp.of(before)
            or after.st_ctime_ns != before.st_ctime_ns)


def examine(path: Path, client: Engine | None, mode: ScanMode,
            policy: ContentPolicy = NO_POLICY) -> Examined:
    """The verdict, sha256 and size of exactly the bytes now at ``path`` (``client`` None:
    scanning is switched off, and the file passes as unscanned), under its owner's ``policy``
    (:mod:`ssftp.scan.policy`: its type, read from the same descriptor, and encrypted content).

    What fstat can decide (the type, the links, the size limit) is decided before a byte is
    read: a sparse upload can claim terabytes for one byte sent, and hashing it first held
    its scan thread for minutes only to quarantine it anyway. Such a file has no sha256 (its
    audit record and events name it by path).
    """
    try:
        # O_NONBLOCK: a FIFO dropped into staging must not hang the scanner on open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return Examined(Verdict(VerdictKind.UNSCANNABLE, f"cannot be opened as a file: {exc}"))
    try:
        before = os.fstat(fd)
        identity = (before.st_dev, before.st_ino)
        if not stat.S_ISREG(before.st_mode):
            return Examined(Verdict(VerdictKind.UNSCANNABLE, "not a regular file"),
                            identity=identity)
        if before.st_nlink > 1:
            # Another name could change these bytes after the verdict.
            return Examined(Verdict(VerdictKind.UNSCANNABLE,
                                    f"has {before.st_nlink} hard links; only a file with a "
                                    "single name can be passed as clean"), identity=identity)
        if client is not None and (limited := client.over_limit(before.st_size)) is not None:
            return Examined(limited, size=before.st_size, identity=identity)
        sha256, size = sha256_of(fd)
        found_type = file_type(fd) if policy.judges_types else None
        if client is None:
            unscanned = Verdict(VerdictKind.UNSCANNED,
                                "scanning is switched off (enableVirusScan: false)")
            return Examined(policy.settle(unscanned, found_type), sha256, size,
                            identity=identity)
        # Asked before the scan: a database loaded meanwhile makes the verdict's name older
        # than its judge, never newer (ClamdClient.loaded_signatures).
        signatures = client.loaded_signatures()
        verdict = policy.settle(client.scan(_clamd_reads(path, fd, mode), mode), found_type)
        if (_changed(before, os.fstat(fd)) or size != before.st_size
                or not still_named(path, identity)):
            return Examined(Verdict(VerdictKind.ERROR,
                                    "the file changed while it was being scanned"),
                            sha256, size, signatures, identity, changed=True)
        return Examined(verdict, sha256, size, signatures, identity)
    except OSError as exc:
        # An I/O error reading it (a failing disk or share): worth another try later.
        return Examined(Verdict(VerdictKind.ERROR, f"could not be read: {exc}"))
    finally:
        os.close(fd)


def _clamd_reads(path: Path, fd: int, mode: ScanMode) -> Path:
    """What clamd is given to scan: the descriptor's own /proc name, which the client opens
    (fd mode) or streams (stream mode) as exactly the file that was hashed, whatever ``path``
    holds by then. In path mode clamd opens a name itself, in its own process, where our
    /proc/self is not ours: it gets ``path``, and the check afterwards that the name still
    holds this file is what stands behind the verdict."""
    return path if mode == "path" else Path(proc_path(fd))
