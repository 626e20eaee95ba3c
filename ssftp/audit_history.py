"""One file's history from the audit log, for ``ssftp status PATH|SHA256``.

The audit log (JSON lines in ``log/audit.log``, rotated by logrotate to ``audit.log.1``,
``audit.log.2.gz``, ... or, with ``dateext``, ``audit.log-20261201``, ``audit.log-20261202.gz``)
is the record of every file's life; this reads it back for one file, oldest record first.

**Names.** Records name a file in different ways: a scan's ``file`` is the staging sub path
(``<account dir>/<sub path>``); its ``source`` and ``destination``, and the ``file`` (and
``archived``) of downloads, uploads, fetches and deletes are relative to the data root
(``staging/...``, ``clean/...``, ``quarantine/...``); records written before that named a
download's ``file`` by its absolute path in staging, an upload's relative to ``clean/`` and its
``archived`` absolute. So each is reduced to one *name key* (:func:`name_key`): the path
relative to the data root, with ``staging/`` and ``clean/`` taken off, because a file keeps its
sub path from staging to clean.
Quarantine and upload archive names keep their area: they are names of their own.

**Linking rule.** A file is its names and its contents (sha256s). Two passes over the logs:

1. the records that name the asked path, or whose sha256 is (or starts with) the asked one;
   their names and sha256s are the file's;
2. the history: every record whose sha256 is one of the file's, and every record without a
   sha256 (a download, a webhook, an upload, a scan that could not read the file) that names
   one of the file's names.

So by path, the history holds every version ever stored under that path, and by sha256 every
name those bytes had; a record carrying other bytes under the same name is left out. The
linking stops after one step on purpose: a closure would run from an empty file to every
empty file and on to all their names.

**Across a chain.** Instances hand a file on by its bytes, under names of their own (A's
``partner/report.csv`` arrives at B as ``from-a/report.csv``). So over several instances' logs,
a sha256 that pass 1 found on one instance counts as asked on the others, and each instance's
history is then found in its own logs by the rule above; the records of all are merged by
time, each marked with its instance.

**Speed.** Each pass searches the logs as bytes, a chunk at a time, for the names and
sha256s (as JSON spells them), and JSON-parses only the lines that hold one: 0.6-0.7 s for
``ssftp status`` over 1 M records (428 MB) in the page cache, by path or by sha256, 0.23 s of
it the command's start. So no index is kept.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ssftp.errors import InvalidValueError
from ssftp.logs import one_line

AUDIT_LOG = "audit.log"
# Areas that hold a file under the same sub path: its name there is the sub path alone.
_SHARED_AREAS = ("staging", "clean")
_NAME_FIELDS = ("file", "source", "destination", "archived")
_MIN_PREFIX = 12
_CHUNK = 1 << 22
_HEX = re.compile(r"[0-9a-fA-F]+")
# logrotate's names for old copies: numbered (``audit.log.2.gz``, higher is older) or, with
# ``dateext``, dated (``audit.log-20261201.gz``, by its dateformat, later sorts later).
_NUMBERED = re.compile(re.escape(AUDIT_LOG) + r"\.(\d+)(?:\.gz)?")
_DATED = re.compile(re.escape(AUDIT_LOG) + r"-(\d[\d_-]*)(?:\.gz)?")
# Shown first on a text line, in this order; other fields follow as they were written.
_FIRST_FIELDS = ("file", "verdict", "signature", "database", "destination", "sha256", "size")
_NOT_SHOWN = ("time", "event", "level", "log")
# What makes a text value be shown in quotes.
_QUOTED = frozenset(' "\\')


@dataclass(frozen=True)
class Query:
    """What was asked for: a name key, or a sha256 (or a prefix of one, lower case)."""

    name: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class AuditSource:
    """One instance's audit logs (oldest first), the data root its records name files under,
    and the instance name its records are marked with in a merged history: its config's
    ``instanceName``; without a config (None), the name its own records give, else the root."""

    logs: list[Path]
    root: Path
    instance: str | None


@dataclass
class _File:
    """The names and contents of the file being followed, and whether any record named it."""

    names: set[str]
    sha256s: set[str]
    found: bool = False


def parse_query(text: str, root: Path) -> Query:
    """A sha256 (64 hex digits, or a prefix of at least 12) or a path as the audit log names
    files; raises :class:`InvalidValueError` for anything else."""
    if "/" not in text and _HEX.fullmatch(text):
        if len(text) < _MIN_PREFIX or len(text) > 64:
            raise InvalidValueError(f"{text!r}: a sha256 is 64 hex digits (a prefix of at "
                                    f"least {_MIN_PREFIX} will do)")
        return Query(sha256=text.lower())
    parts = PurePosixPath(text).parts
    if ".." in parts or len([part for part in parts if part != "/"]) < 2:
        raise InvalidValueError(f"{text!r} is neither a sha256 nor a path "
                                "<account dir>/<sub path> (or clean/..., quarantine/...)")
    return Query(name=name_key(text, root))


def name_key(path: str, root: Path) -> str:
    """The one name of a file that every record's way of naming it reduces to."""
    for base in dict.fromkeys((root.absolute().as_posix(), root.resolve().as_posix())):
        if path.startswith(base + "/"):
            path = path[len(base) + 1:]
            break
    path = PurePosixPath(path).as_posix()
    area, _, rest = path.partition("/")
    return rest if area in _SHARED_AREAS and rest else path


def audit_logs(log_dir: Path) -> list[Path]:
    """``audit.log`` and its rotated copies in ``log_dir``, oldest first.

    Numbered copies come before dated ones: where both are, the numbered are left from
    before ``dateext`` was turned on (logrotate no longer touches them)."""
    numbered, dated = [], []
    for path in log_dir.glob(AUDIT_LOG + "[.-]*"):
        if match := _NUMBERED.fullmatch(path.name):
            numbered.append((-int(match[1]), path))
        elif match := _DATED.fullmatch(path.name):
            dated.append((match[1], path))
    current = log_dir / AUDIT_LOG
    return ([path for _, path in sorted(numbered)] + [path for _, path in sorted(dated)]
            + ([current] if current.exists() else []))


def file_history(sources: list[AuditSource], query: Query) -> list[dict[str, Any]]:
    """The records of the asked file, oldest first (see the module's linking rule). Over
    several instances' logs, merged by time, each with its ``instance`` (see "Across a
    chain"); one instance's come as written.

    Raises :class:`InvalidValueError` when a sha256 prefix fits more than one file."""
    files = [_identify(source.logs, source.root, query) for source in sources]
    everywhere = set().union(*(file.sha256s for file in files))
    _refuse_ambiguous(query, everywhere)
    if len(sources) == 1:
        return _history(sources[0].logs, sources[0].root, files[0])
    records = []
    for source, file in zip(sources, files, strict=True):
        if elsewhere := everywhere - file.sha256s:
            _add(file, _identify(source.logs, source.root, Query(), elsewhere))
        found = _history(source.logs, source.root, file)
        instance = source.instance or _instance_named(found) or str(source.root)
        records += [{**record, "instance": record.get("instance") or instance}
                    for record in found]
    return sorted(records, key=lambda record: str(record.get("time", "")))


def _instance_named(records: list[dict[str, Any]]) -> str | None:
    """The instance that the records name themselves (a scan's record does)."""
    return next((str(record["instance"]) for record in records if record.get("instance")),
                None)


def _identify(logs: list[Path], root: Path, query: Query,
              sha256s: frozenset[str] | set[str] = frozenset()) -> _File:
    """Pass 1: the names and sha256s of the records that name the asked path, start with the
    asked sha256, or carry one of ``sha256s``."""
    file = _File({query.name} if query.name else set(), set(sha256s))
    for record in _records(logs, _needles(file, query.sha256)):
        sha256 = record.get("sha256")
        if _names_asked(record, query, root) or sha256 in sha256s:
            file.found = True
            file.names |= _names(record, root)
            if sha256:
                file.sha256s.add(sha256)
    return file


def _add(file: _File, more: _File) -> None:
    file.names |= more.names
    file.sha256s |= more.sha256s
    file.found = file.found or more.found


def _refuse_ambiguous(query: Query, sha256s: set[str]) -> None:
    if query.sha256 and len(sha256s) > 1:
        raise InvalidValueError(f"{query.sha256} is the start of {len(sha256s)} sha256s "
                                f"({', '.join(sorted(sha256s))}): give more digits")


def _history(logs: list[Path], root: Path, file: _File) -> list[dict[str, Any]]:
    """Pass 2: every record of the file, oldest first; none when no record named it."""
    if not file.found:
        return []
    return [record for record in _records(logs, _needles(file)) if _belongs(record, file, root)]


def _names_asked(record: dict[str, Any], query: Query, root: Path) -> bool:
    sha256 = record.get("sha256")
    if query.sha256:
        return isinstance(sha256, str) and sha256.startswith(query.sha256)
    return query.name is not None and query.name in _names(record, root)


def _belongs(record: dict[str, Any], file: _File, root: Path) -> bool:
    sha256 = record.get("sha256")
    if sha256:
        return sha256 in file.sha256s
    return not file.names.isdisjoint(_names(record, root))


def _names(record: dict[str, Any], root: Path) -> set[str]:
    return {name_key(value, root) for field in _NAME_FIELDS
            if isinstance(value := record.get(field), str) and value}


def _needles(file: _File, sha256_prefix: str | None = None) -> list[bytes]:
    """What a line must contain to be worth parsing: a name or sha256 as JSON spells it (one
    that holds another needle is left out: the other finds its lines)."""
    spelt = {json.dumps(name)[1:-1].encode() for name in file.names}
    spelt |= {sha256.encode() for sha256 in file.sha256s}
    if sha256_prefix:
        spelt.add(sha256_prefix.encode())
    return [needle for needle in spelt
            if not any(other != needle and other in needle for other in spelt)]


def _records(logs: Iterable[Path], needles: list[bytes]) -> Iterator[dict[str, Any]]:
    """The records of ``logs`` (in order) whose line contains a needle; a line that is not
    a JSON object (cut short by a crash) is passed over."""
    for path in logs:
        with _open(path) as file:
            for line in _lines_with(file, needles):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record


def _lines_with(file: io.BufferedIOBase, needles: list[bytes]) -> Iterator[bytes]:
    """The lines of ``file`` that contain a needle.

    The needles are searched for in whole chunks, and only the lines around a hit are cut
    out: testing every line in Python took 1.3 s a pass over 1 M records, this 0.2 s."""
    rest = b""
    while chunk := file.read(_CHUNK):
        chunk = rest + chunk
        end = chunk.rfind(b"\n") + 1
        rest = chunk[end:]
        yield from _hits(chunk, end, needles)
    yield from _hits(rest, len(rest), needles)


def _hits(chunk: bytes, end: int, needles: list[bytes]) -> Iterator[bytes]:
    """The lines of ``chunk[:end]`` that contain a needle, each once, in order. One
    ``bytes.find`` per needle: a regex of alternatives was twice as slow as all of them."""
    lines: set[tuple[int, int]] = set()
    for needle in needles:
        position = chunk.find(needle, 0, end)
        while position >= 0:
            start = chunk.rfind(b"\n", 0, position) + 1
            stop = chunk.find(b"\n", position, end)
            stop = end if stop < 0 else stop
            lines.add((start, stop))
            position = chunk.find(needle, stop, end)
    for start, stop in sorted(lines):
        yield chunk[start:stop]


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def format_record(record: dict[str, Any]) -> str:
    """One line for a person at a terminal: time, event, then the fields that are set as
    ``key=value``, the whole line :func:`~ssftp.logs.one_line` (names are partners')."""
    first = [key for key in _FIRST_FIELDS if key in record]
    rest = [key for key in record if key not in _FIRST_FIELDS and key not in _NOT_SHOWN]
    fields = " ".join(f"{key}={_shown(record[key])}" for key in first + rest
                      if record[key] is not None)
    return one_line(f"{record.get('time', '?')}  {record.get('event', '?'):<8}  {fields}")


def _shown(value: Any) -> str:
    """A value as one word: text with a space, a quote, a backslash or anything not
    printable in quotes (its own quotes and backslashes escaped), so that where it ends, and
    what is an escape, is plain; the line's one_line escapes the rest (``\\n``, ``\\x1b``)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text and text.isprintable() and not _QUOTED.intersection(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
