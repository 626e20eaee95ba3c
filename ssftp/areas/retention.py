"""Retention: files removed once they have been in their area longer than its days
(``retention.cleanDays``, ``quarantineDays``, ``uploadArchiveDays``; absent, kept forever).

**Which time.** A file's age is counted from when it entered its area, and the one timestamp
that tells it is the file's ``ctime``: every way into an area is a rename or a new name (a
scan's move, a release's link, an uploader's archive; a copy across filesystems makes a new
file), which sets it to the server's clock. Not the ``mtime``: a client sets that (``put -p``
keeps the source's time), and a partner's file dated 2001 would be removed the moment it
arrived. A later change to the file's attributes sets the ctime again, which only keeps the
file longer: the safe side. A filesystem that keeps the ctime on rename (some network shares)
counts from when the file was written instead.

**How.** Each area is walked through directory descriptors (``os.fwalk``): no directory is
entered through a symlink, and a directory swapped for a link during the walk is not entered
either, so nothing outside the area is touched. Removal is ``unlink``, never a truncate: a
consumer reading the file keeps reading it whole. ssftp's own hidden names (temp files of a
move in progress) are left alone, and directories stay (an account's directory is where the
next file lands). Each removal is written to the audit log first; a file whose record cannot
be written stays. A quarantined file's verdict record goes with it, and a record whose file
has left (kept as history by a release) goes once it is as old.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ssftp.areas.quarantine import read_record, record_name
from ssftp.config.schema import RetentionSettings
from ssftp.errors import AuditLogError
from ssftp.layout import DataLayout, is_reserved_name
from ssftp.logs import audit_event, one_line, write_audit_event

DAY_SECONDS = 86400.0
# The account of a file by its sub path (``<account dir>/<sub path>``), as in staging.
OwnerOf = Callable[[PurePosixPath], str | None]


def kept_days(settings: RetentionSettings) -> dict[str, float]:
    """Each area with retention, and its days; an area left out keeps its files forever."""
    days = {"clean": settings.clean_days, "quarantine": settings.quarantine_days,
            "uploadarchive": settings.upload_archive_days}
    return {area: value for area, value in days.items() if value is not None}


@dataclass
class Report:
    """What a retention pass removed, counted per account and area (SFTPGo's retention
    report), and what it could not remove."""

    removed: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, object]]:
        """The run's table: one row per account and area, the account first."""
        return [{"account": account, "area": area, "removed": count}
                for (account, area), count in sorted(self.removed.items())]

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def apply_retention(layout: DataLayout, settings: RetentionSettings, owner_of: OwnerOf, *,
                    instance: str, now: float | None = None) -> Report:
    """Remove what is older than its area's days by ``now`` (the clock, unless a test gives
    one)."""
    report = Report()
    moment = time.time() if now is None else now
    for area, days in kept_days(settings).items():
        _Sweep(layout, area, days, moment, owner_of, instance, report).run()
    return report


@dataclass
class _Sweep:
    layout: DataLayout
    area: str
    days: float
    now: float
    owner_of: OwnerOf
    instance: str
    report: Report

    def run(self) -> None:
        root = self.layout.root / self.area
        if not root.is_dir():
            return
        for directory, subdirectories, names, dir_fd in os.fwalk(root, follow_symlinks=False):
            subdirectories[:] = [d for d in subdirectories if not is_reserved_name(d)]
            relative = PurePosixPath(os.path.relpath(directory, root))
            present = set(names)
            # In quarantine, the verdict records beside their files go with them.
            attached = ({record_name(name) for name in present} & present
                        if self.area == "quarantine" else set())
            for name in sorted(present - attached):
                if not is_reserved_name(name):
                    self._consider(relative / name, name, dir_fd,
                                   record_name(name) in attached)

    def _consider(self, sub_path: PurePosixPath, name: str, dir_fd: int,
                  with_record: bool) -> None:
        try:
            info = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        age_days = (self.now - info.st_ctime) / DAY_SECONDS
        if stat.S_ISDIR(info.st_mode) or age_days <= self.days:
            return
        record = read_record(name, dir_fd) if with_record else None
        account = str((record or {}).get("account") or self.owner_of(sub_path) or "")
        shown = f"{self.area}/{sub_path.as_posix()}"
        try:
            write_audit_event("retention", logging.INFO, file=shown, area=self.area,
                              account=account or None, size=info.st_size,
                              sha256=(record or {}).get("sha256"),
                              age_days=round(age_days, 2), kept_days=self.days,
                              instance=self.instance)
        except AuditLogError as exc:
            self.report.failed.append(f"{one_line(shown)}: kept, {exc}")
            return
        try:
            os.unlink(name, dir_fd=dir_fd)
            if with_record:
                os.unlink(record_name(name), dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            audit_event("retention", logging.WARNING, file=shown, removed=False,
                        error=exc.strerror or str(exc))
            self.report.failed.append(f"{one_line(shown)}: {exc.strerror or exc}")
            return
        self.report.removed[(account, self.area)] += 1
