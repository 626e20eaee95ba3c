"""A second look at files already handed on: when the signatures change, or an operator asks.

:meth:`Rescanner.rescan` examines a file where it is (``clean/``, ``uploadarchive/`` or
``quarantine/``), as a staged file is examined, and records the look (an audit record with the
database that made it, so ``ssftp status`` shows every look). A file of ``clean/`` or
``uploadarchive/`` now found infected leaves for ``quarantine/<same sub path>``, with the
verdict record, webhook and event of a fresh detection (``reason: rescan``). A file of
``quarantine/`` is only reported: one no longer detected is for an operator to release.

Consumers keep reading: a file is never cut short or rewritten, only renamed, and a reader
holding it open reads it whole. Nothing is moved that was not scanned: the infected file is
first taken out of its area to a hold of its own (``<area>/.ssftp-rescan/<token>``, beside a
note of its name, out of every client's reach), and only if what was taken is the very file
that was scanned (the same inode, unchanged) does it go on; a newer file that took the name
meanwhile goes back and is looked at in its turn. A crash while a file is held leaves it out of
reach, and the next rescan finishes the job (:meth:`Rescanner.recover`).

Every outcome is a :class:`~ssftp.scan.results.ScanResult` with ``reason="rescan"``, recorded
through the scanner's :class:`~ssftp.scan.record.Recorder` port before any move.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ssftp.config.schema import ScanMode
from ssftp.errors import AuditLogError, OutboxError
from ssftp.layout import RESCAN_HOLD_DIR, DataLayout, is_pending_name
from ssftp.logs import APP, log_event, one_line, warn_on_stderr
from ssftp.moves import fsync_directory, move_atomically, write_durably
from ssftp.scan.claims import reserve_quarantine
from ssftp.scan.engines import Engine
from ssftp.scan.examine import Examined, examine, still_named
from ssftp.scan.owners import StagingOwners
from ssftp.scan.policy import ContentPolicy
from ssftp.scan.record import Recorder
from ssftp.scan.results import Area, ScanResult, stamp
from ssftp.scan.router import VERDICT_RECORD_SUFFIX, record_path
from ssftp.scan.scanner import Scanner
from ssftp.scan.verdict import VerdictKind
from ssftp.scan.workers import default_name

logger = logging.getLogger(APP)

# Areas a rescan may look at; the first two are handed on, and a detection there moves.
RESCANNED = (Area.CLEAN, Area.UPLOADARCHIVE, Area.QUARANTINE)
# Looks at one name before giving up on a file that keeps changing under the scan.
LOOKS = 3
_NOTE_SUFFIX = ".json"
# In system/: which signatures the last whole rescan was for (a restart after an update that
# happened while ssftp was down still rescans).
RESCAN_STATE = "rescan.json"


class _Replaced(Exception):
    """The name held another file than the one scanned, by the time it was taken."""


def rescanned_for(layout: DataLayout) -> str | None:
    """The signatures (``engine/database``) the last whole rescan was for; None before one
    (or when the record cannot be read: a rescan too many is harmless, one too few is not)."""
    try:
        value = json.loads((layout.system / RESCAN_STATE).read_text())["signatures"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def remember_rescanned(layout: DataLayout, signatures: str) -> None:
    """Record that every handed-on file has been looked at with ``signatures``."""
    write_durably(layout.system / RESCAN_STATE, json.dumps({"signatures": signatures}).encode(),
                  replace=True)


def area_root(layout: DataLayout, area: Area) -> Path:
    return layout.root / area.value


def handed_on_files(layout: DataLayout, area: Area) -> Iterator[Path]:
    """Every file of ``area`` a rescan looks at, in a stable order: regular files only (no
    link is followed), not ssftp's own names or uploads in progress, not verdict records."""
    root = area_root(layout, area)
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(name for name in dirs if not is_pending_name(name))
        for name in sorted(files):
            if is_pending_name(name) or (area is Area.QUARANTINE
                                         and name.endswith(VERDICT_RECORD_SUFFIX)):
                continue
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path


@dataclass(frozen=True)
class Rescanner:
    """What a rescan needs: where the data is, which clamd, who owns what, where to record."""

    layout: DataLayout
    client: Engine
    recorder: Recorder
    owners: StagingOwners
    instance: str
    mode: ScanMode = "auto"
    worker: str = field(default_factory=default_name)  # ssftp.scan.workers

    @classmethod
    def beside(cls, scanner: Scanner) -> Rescanner | None:
        """The rescanner that looks again with what ``scanner`` scans with (its clamd, its
        recorder, its accounts); None when scanning is switched off."""
        if scanner.client is None:
            return None
        return cls(scanner.layout, scanner.client, scanner.recorder, scanner.owners,
                   scanner.instance, scanner.mode, scanner.worker)

    def rescan_all(self, areas: Iterable[Area]) -> list[ScanResult]:
        """Every file of ``areas``, and first what a stopped rescan held there (``ssftp
        rescan``; the worker's rescans are Prefect runs over the same steps)."""
        results = []
        for area in areas:
            results += self.recover(area)
            results += [result for path in handed_on_files(self.layout, area)
                        if (result := self.rescan(path)) is not None]
        return results

    def rescan(self, path: Path, flow_run_id: str | None = None) -> ScanResult | None:
        """Look at ``path`` (a file of a :data:`RESCANNED` area) again; None when it is gone."""
        area = self._area_of(path)
        sub_path = PurePosixPath(path.relative_to(area_root(self.layout, area)).as_posix())
        examined: Examined | None = None
        # A second look is about new signatures, not types: a file in clean/ is not blocked
        # after the fact because its account's type lists changed. An encrypted file its
        # account allows stays clean (not inspected).
        policy = ContentPolicy(
            allow_encrypted=self.owners.policy_for(sub_path).allow_encrypted)
        for _ in range(LOOKS):
            if not os.path.lexists(path):
                return None
            examined = examine(path, self.client, self.mode, policy)
            if examined.changed:
                continue
            if (examined.verdict.kind is VerdictKind.INFECTED
                    and area is not Area.QUARANTINE):
                try:
                    return self._quarantine(path, area, sub_path, examined, flow_run_id)
                except _Replaced:
                    continue
            return self._stays(path, area, sub_path, examined, flow_run_id)
        assert examined is not None  # LOOKS > 0
        return self._stays(path, area, sub_path, examined, flow_run_id)  # it kept changing

    def recover(self, area: Area) -> list[ScanResult]:
        """Finish what a rescan that stopped while holding files left: each held file is
        looked at again and goes to quarantine, or back under its name."""
        hold = area_root(self.layout, area) / RESCAN_HOLD_DIR
        results = []
        for note in sorted(hold.glob(f"*{_NOTE_SUFFIX}")) if hold.is_dir() else []:
            held = note.with_suffix("")
            try:
                name = PurePosixPath(json.loads(note.read_text())["name"])
                if name.is_absolute() or ".." in name.parts or not name.parts:
                    raise ValueError(f"{str(name)!r} is not a name in {area}/")
                origin = area_root(self.layout, area).joinpath(*name.parts)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log_event(logger, "a held rescan file's note cannot be read; left held",
                          logging.ERROR, file=str(held), error=str(exc))
                continue
            if not held.exists():
                note.unlink(missing_ok=True)
                continue
            self._put_back(held, note, origin)
            if (result := self.rescan(origin)) is not None:
                results.append(result)
        return results

    def _area_of(self, path: Path) -> Area:
        for area in RESCANNED:
            if path.is_relative_to(area_root(self.layout, area)):
                return area
        raise ValueError(f"not a file a rescan looks at: {path}")

    def _quarantine(self, path: Path, area: Area, sub_path: PurePosixPath, examined: Examined,
                    flow_run_id: str | None) -> ScanResult:
        """Take the infected file out of its area, check it is the one scanned, record the
        detection and move it to quarantine; raises _Replaced when the name held another."""
        assert examined.identity is not None  # a scanned file was opened
        try:
            held, note = self._hold(path, area, sub_path)
        except OSError as exc:
            return self._stays(path, area, sub_path,
                               examined.failed(f"could not be taken out of {area}/: {exc}"),
                               flow_run_id)
        if not still_named(held, examined.identity):
            self._put_back(held, note, path)
            raise _Replaced
        wished = self.layout.quarantine / sub_path
        when = stamp()
        try:
            target = self._reserve(path, area, sub_path, examined, flow_run_id, wished, when)
        except OSError as exc:  # a full disk
            self._put_back(held, note, path)
            return self._stays(path, area, sub_path,
                               examined.failed(f"could not be quarantined: {exc}"), flow_run_id)
        result = self._result(path, area, sub_path, examined, flow_run_id, Area.QUARANTINE,
                              target, when)
        try:
            event = self.recorder.record(result, self._record(result))
        except (AuditLogError, OutboxError) as exc:
            record_path(target).unlink(missing_ok=True)
            self._put_back(held, note, path)
            warn_on_stderr(f"{one_line(result.source)} stays: its detection could not be "
                           f"recorded, and it will be rescanned: {exc}")
            return self._stays(path, area, sub_path,
                               examined.failed(f"not moved to quarantine/: {exc}"),
                               flow_run_id, quiet=True)
        try:
            move_atomically(held, target)
        except OSError as exc:
            record_path(target).unlink(missing_ok=True)
            self._put_back(held, note, path)
            return self._stays(path, area, sub_path,
                               examined.failed(f"could not move the file on: {exc}"),
                               flow_run_id)
        note.unlink(missing_ok=True)
        return replace(result, event=event)

    def _hold(self, path: Path, area: Area, sub_path: PurePosixPath) -> tuple[Path, Path]:
        """Rename ``path`` into its area's hold (a note of its name first, so a crash leaves
        what :meth:`recover` needs)."""
        hold = area_root(self.layout, area) / RESCAN_HOLD_DIR
        hold.mkdir(exist_ok=True)
        held = hold / secrets.token_hex(8)
        note = held.with_name(held.name + _NOTE_SUFFIX)
        write_durably(note, json.dumps({"name": sub_path.as_posix()}).encode(), replace=False)
        try:
            os.rename(path, held)
        except OSError:
            note.unlink(missing_ok=True)
            raise
        fsync_directory(hold)
        return held, note

    @staticmethod
    def _put_back(held: Path, note: Path, origin: Path) -> None:
        """Give a held file its name back; when a newer file has taken the name since, the
        held one is an older version of it (a newer clean file replaces the older one, as on
        upload), and goes."""
        try:
            origin.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(held, origin)
            except FileExistsError:
                log_event(logger, "a rescanned file was replaced by a newer one meanwhile",
                          file=one_line(str(origin)))
            held.unlink()
            note.unlink(missing_ok=True)
        except OSError as exc:  # it stays held, out of reach, for the next rescan's recover
            log_event(logger, "a held rescan file could not be put back", logging.ERROR,
                      file=one_line(str(origin)), error=str(exc))

    def _reserve(self, path: Path, area: Area, sub_path: PurePosixPath, examined: Examined,
                 flow_run_id: str | None, wished: Path, when: str) -> Path:
        """A quarantine name for the file, reserved by the verdict record it will have."""
        return reserve_quarantine(wished, lambda target: self._record(self._result(
            path, area, sub_path, examined, flow_run_id, Area.QUARANTINE, target, when)))

    def _stays(self, path: Path, area: Area, sub_path: PurePosixPath, examined: Examined,
               flow_run_id: str | None, *, quiet: bool = False) -> ScanResult:
        result = self._result(path, area, sub_path, examined, flow_run_id, area, path)
        return replace(result, event=self.recorder.record(result, self._record(result),
                                                          quiet=quiet))

    def _record(self, result: ScanResult) -> dict[str, Any]:
        return {**result.as_dict(), "instance": self.instance}

    def _result(self, path: Path, area: Area, sub_path: PurePosixPath, examined: Examined,
                flow_run_id: str | None, now_in: Area, destination: Path,
                when: str | None = None) -> ScanResult:
        return ScanResult(
            file=sub_path.as_posix(), account=self.owners.owner_of(sub_path),
            source=self._relative(path), destination=self._relative(destination),
            area=now_in, time=when or stamp(), flow_run_id=flow_run_id, reason="rescan",
            worker=self.worker, **examined.judged())

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()
