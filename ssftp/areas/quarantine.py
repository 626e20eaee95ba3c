"""Quarantine as an operator sees it: the files there with what their verdict records say, the
names an operator gives for one of them, and deleting one.

A quarantined file ``quarantine/<sub path>`` has its verdict record beside it
(:func:`ssftp.scan.router.record_path`: ``<name>.verdict.json``); the record is what reserved
the name, and a file without one (a crash, a hand-made copy) is still listed, as such. A name
ending in the record suffix that is no file's record is a record too: of a file released or
deleted (kept as history, :func:`history_name`), or left by a crash; it is not listed.

The names an operator types are hostile input (a script may pass what a partner named): a name
is taken only below ``quarantine/``, never with ``..``, never one of ssftp's own hidden names,
and it is opened one directory at a time without following a link (:func:`open_directory`), so
a symlink planted in quarantine cannot lead a release or a delete anywhere else.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ssftp.errors import InvalidValueError, NotInQuarantineError
from ssftp.layout import DataLayout, is_reserved_name
from ssftp.logs import one_line, write_audit_event
from ssftp.names import fitting
from ssftp.scan.router import VERDICT_RECORD_SUFFIX, record_path

AREA = "quarantine"
# A verdict record is a few hundred bytes; one larger than this is not ssftp's.
RECORD_MAX_BYTES = 1 << 20
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def record_name(name: str) -> str:
    """The name of the verdict record beside the quarantined file ``name``."""
    return record_path(Path(name)).name


def history_name(name: str, when: datetime, action: str) -> str:
    """What the verdict record of ``name`` is renamed to once the file has left by ``action``
    (``released``): still a record (it ends in the suffix), no longer the one that reserves
    ``name``, so a later quarantined file of the same name takes it again."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return fitting(name, f".{action}-{stamp}{VERDICT_RECORD_SUFFIX}")


def parse_name(text: str, layout: DataLayout) -> PurePosixPath:
    """The sub path below ``quarantine/`` that ``text`` names: ``quarantine/acme/x.pdf``,
    ``acme/x.pdf`` or the absolute path of the file in this data root's quarantine."""
    shown = one_line(text)
    if not text or "\0" in text:
        raise NotInQuarantineError(f"{shown!r} is not a file in {AREA}/")
    path = PurePosixPath(text)
    if path.is_absolute():
        base = PurePosixPath(layout.quarantine.as_posix())
        if not path.is_relative_to(base):
            raise NotInQuarantineError(f"{shown} is outside {layout.quarantine}")
        path = path.relative_to(base)
    elif path.parts[:1] == (AREA,):
        path = PurePosixPath(*path.parts[1:])
    parts = path.parts
    if not parts or ".." in parts or any(is_reserved_name(part) for part in parts):
        raise NotInQuarantineError(f"{shown!r} is not a file in {AREA}/ (give its name as "
                                   f"`ssftp quarantine list` shows it)")
    return path


def open_directory(root: Path, parts: tuple[str, ...], *, create: bool = False) -> int:
    """A descriptor of ``root/<parts...>``, each directory opened inside the one before and
    none through a symlink (ELOOP); with ``create``, the missing ones are made. The caller
    closes it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                else:
                    os.fsync(fd)
            inner = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def directory_of(layout: DataLayout, sub_path: PurePosixPath) -> Iterator[int]:
    """The open directory in quarantine that holds ``sub_path``, which must be a file there
    (not a directory, not a verdict record)."""
    shown = f"{AREA}/{one_line(sub_path.as_posix())}"
    try:
        fd = open_directory(layout.quarantine, sub_path.parts[:-1])
    except FileNotFoundError:
        raise NotInQuarantineError(f"no {shown}") from None
    except OSError as exc:  # ELOOP, ENOTDIR: a link or a file on the way
        raise NotInQuarantineError(f"{shown} is not a file in {AREA}/: "
                                   f"{exc.strerror or exc}") from None
    try:
        name = sub_path.name
        try:
            info = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            raise NotInQuarantineError(f"no {shown}") from None
        if stat.S_ISDIR(info.st_mode):
            raise NotInQuarantineError(f"{shown} is a directory; name one file in it")
        if name.endswith(VERDICT_RECORD_SUFFIX) and not exists_at(record_name(name), fd):
            raise NotInQuarantineError(f"{shown} is a verdict record, not a quarantined file")
        yield fd
    finally:
        os.close(fd)


def exists_at(name: str, dir_fd: int) -> bool:
    """Whether ``name`` is taken in the open directory ``dir_fd`` (by anything, a link too)."""
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def read_record(name: str, dir_fd: int) -> dict[str, Any] | None:
    """The verdict record of the quarantined file ``name`` in ``dir_fd``; None when it has
    none that can be read (missing, not a regular file, not ssftp's JSON)."""
    try:
        fd = os.open(record_name(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, RECORD_MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        record = json.loads(data) if len(data) <= RECORD_MAX_BYTES else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@dataclass(frozen=True)
class Entry:
    """One file in quarantine, as ``ssftp quarantine list`` shows it."""

    name: PurePosixPath  # below quarantine/
    size: int
    # When it entered quarantine: its record's time, else its ctime (a rename sets it).
    time: str
    record: dict[str, Any] | None

    def _field(self, key: str) -> str | None:
        value = (self.record or {}).get(key)
        return None if value is None else str(value)

    def as_dict(self) -> dict[str, Any]:
        """The fields of a JSON line; ``record`` says whether a verdict record was read."""
        return {"file": f"{AREA}/{self.name.as_posix()}", "account": self._field("account"),
                "verdict": self._field("verdict"), "signature": self._field("signature"),
                "database": self._field("database"), "time": self.time, "size": self.size,
                "sha256": self._field("sha256"), "record": self.record is not None}


def entries(layout: DataLayout) -> list[Entry]:
    """Every file in quarantine, by name, with what its verdict record says. Directories are
    walked without following links; ssftp's own hidden names and the records are left out."""
    found = []
    for directory, subdirectories, names in os.walk(layout.quarantine):
        subdirectories[:] = sorted(d for d in subdirectories if not is_reserved_name(d))
        present = set(names)
        try:
            dir_fd = os.open(directory, _DIRECTORY_FLAGS)
        except OSError:  # removed or replaced by a link since it was listed
            continue
        try:
            for name in sorted(present):
                if is_reserved_name(name) or (name.endswith(VERDICT_RECORD_SUFFIX)
                                              and record_name(name) not in present):
                    continue
                entry = _entry(layout, Path(directory, name), name, dir_fd)
                if entry is not None:
                    found.append(entry)
        finally:
            os.close(dir_fd)
    return found


def _entry(layout: DataLayout, path: Path, name: str, dir_fd: int) -> Entry | None:
    try:
        info = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    record = read_record(name, dir_fd)
    when = (record or {}).get("time") or datetime.fromtimestamp(
        info.st_ctime, UTC).isoformat(timespec="milliseconds")
    return Entry(PurePosixPath(path.relative_to(layout.quarantine).as_posix()),
                 info.st_size, str(when), record)


def format_entry(entry: Entry) -> str:
    """One line for a person: the name, then what the record says (or that it has none)."""
    fields = entry.as_dict()
    if entry.record is None:
        return one_line(f"{fields['file']}  size={entry.size}  time={entry.time}  "
                        "(record missing)")
    shown = "  ".join(f"{key}={fields[key]}" for key in
                      ("account", "signature", "database", "time", "size", "sha256")
                      if fields[key] is not None)
    return one_line(f"{fields['file']}  {shown}")


def delete(layout: DataLayout, sub_path: PurePosixPath, *, reason: str,
           operator: str) -> dict[str, Any]:
    """Remove a quarantined file and its verdict record, after the audit record that says who
    and why (written first: a file never leaves without its record); returns that record."""
    reason = checked_reason(reason)
    with directory_of(layout, sub_path) as dir_fd:
        name = sub_path.name
        record = read_record(name, dir_fd) or {}
        audit = {"file": record.get("file") or sub_path.as_posix(),
                 "source": f"{AREA}/{sub_path.as_posix()}", "destination": None,
                 "account": record.get("account"), "sha256": record.get("sha256"),
                 "size": record.get("size"), "signature": record.get("signature"),
                 "reason": reason, "operator": operator}
        write_audit_event("delete", logging.INFO, **audit)
        os.unlink(name, dir_fd=dir_fd)
        with suppress(FileNotFoundError):
            os.unlink(record_name(name), dir_fd=dir_fd)
        os.fsync(dir_fd)
    return audit


def checked_reason(reason: str) -> str:
    """An operator's reason, as the audit record keeps it: one line, not blank."""
    if not reason.strip():
        raise InvalidValueError("--reason must say why (it goes into the audit record)")
    if "\n" in reason or "\r" in reason:
        raise InvalidValueError("--reason must be one line")
    return reason.strip()

