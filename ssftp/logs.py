"""Logging to the console and ``log/``: the application, transfer and audit logs.

Each record is one event with named fields (``log_event(logger, "login", user=..., ok=True)``),
so the logs can be searched and shipped without parsing prose. The files under ``log/`` are
always JSON lines; the console is JSON lines too, or one readable line per event for a person
at a terminal (:func:`set_console`). Field names that suggest a secret are masked on the way
out, as a last line of defence: callers never pass secrets.

Audit records are written with :func:`write_audit_event` (or :func:`audit_event`), never
through logging's own calls: a logging handler that cannot write says so on stderr and goes
on, and a file must not reach ``clean/`` or ``quarantine/`` while its record failed to.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import logging.handlers
import os
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from ssftp.errors import AuditLogError

APP = "ssftp"
TRANSFER = "ssftp.transfer"
AUDIT = "ssftp.audit"
_FILES = {APP: "ssftp.log", TRANSFER: "transfer.log", AUDIT: "audit.log"}
_SECRET_WORDS = ("password", "passphrase", "secret", "private_key", "privatekey", "token")

ConsoleFormat = Literal["json", "text"]


def _masked(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        key: "***" if any(word in key.lower() for word in _SECRET_WORDS) else value
        for key, value in fields.items()
    }


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line. A record goes to stdout and to one or more files; it is
    formatted once for all of them (formatting was ~7% of the server's time per small upload,
    half of it repeated)."""

    def format(self, record: logging.LogRecord) -> str:
        line = getattr(record, "ssftp_json_line", None)
        if line is None:
            line = self._render(record)
            record.ssftp_json_line = line
        return line

    def _render(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "log": record.name,
            "event": record.getMessage(),
        }
        entry.update(self._fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ASCII-escaped: a file name that is not valid UTF-8 (bytes from a foreign writer) must
        # not make the line unwritable; JSON readers turn the escapes back into text.
        return json.dumps(entry, default=str)

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return _masked(getattr(record, "fields", {}))


class RunRecordFormatter(JsonLinesFormatter):
    """Prefect's log records (its runs' logs, on a console that is not a terminal) as ssftp's
    JSON lines, naming the run: Prefect's own JSON formatter writes every attribute of the
    record (~1.5 KB a line), which buried ssftp's events. Prefect's logging config builds it
    with the arguments of a formatter (``PREFECT_LOGGING_FORMATTERS_JSON_CLASS``)."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None,
                 style: Literal["%", "{", "$"] = "%") -> None:
        super().__init__()

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return {field: name for field, attribute in (("flow_run", "flow_run_name"),
                                                     ("task_run", "task_run_name"))
                if (name := getattr(record, attribute, None))}


class RunRecordHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Prefect's console handler when the console is not a terminal: a plain stream handler
    for :class:`RunRecordFormatter`'s lines. Prefect's own prints every record through rich
    (markup, highlighting, wrapping) whatever its formatter writes: 6% of each scan thread's
    time in a 1000-file pipeline (py-spy), for lines no terminal shows. Prefect's logging
    config builds it with the arguments of its own (``PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS``),
    so those it has no use for (the styles) are taken and ignored."""

    def __init__(self, stream: TextIO | None = None, styles: object = None,
                 level: int | str = logging.NOTSET) -> None:
        super().__init__(stream)
        self.setLevel(level)


class TextFormatter(logging.Formatter):
    """``12:00:01 warning  config warning  detail=...``: the console for a person.

    Its fields carry names partners chose (a refused upload's path), so the line is
    :func:`one_line`: an escape sequence in a name is shown, never acted on by the terminal.
    A traceback keeps its lines, each escaped the same way."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(f"{key}={value}" for key, value in
                          _masked(getattr(record, "fields", {})).items())
        line = f"{when} {record.levelname.lower():<8} {record.getMessage()}"
        line = one_line(f"{line}  {fields}" if fields else line)
        if record.exc_info:
            line += "\n" + lines_shown(self.formatException(record.exc_info))
        return line


@dataclass
class _Console:
    format: ConsoleFormat = "json"
    level: int = logging.INFO


_console = _Console()


def set_console(format: ConsoleFormat, level: int) -> None:
    """How the console shows events, and from which level ``ssftp.log`` and the console take
    application events; chosen once by the command line before anything logs. The transfer
    and audit logs are records and always take every event."""
    _console.format = format
    _console.level = level


def printable(text: str) -> str:
    """Text for places that need valid UTF-8 (Prefect's API, tables): a name that is not
    valid UTF-8 shows its odd bytes as ``\\xff`` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, /,
              **fields: Any) -> None:
    """Log one event; ``level`` is positional only, so ``level=`` is a field like any other."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def one_line(text: str) -> str:
    """``printable`` text with every control character (C0, DEL, C1: a file name may hold a
    newline or a terminal escape) shown escaped: safe for a terminal, one line in a feed.

    A surrogate that stands for no byte (``\\ud800`` from a JSON line another program wrote)
    is escaped as it is, rather than raise."""
    with contextlib.suppress(UnicodeEncodeError):
        text = printable(text)
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def lines_shown(text: str) -> str:
    """Text of several lines (a config's problems, a traceback) for a terminal: each line
    :func:`one_line`, the line breaks kept."""
    return "\n".join(one_line(line) for line in text.split("\n"))


def warn_on_stderr(message: str) -> None:
    """One line on stderr, for when the logs themselves cannot be written: no file, no
    handler in between."""
    print(f"ssftp: {one_line(message)}", file=sys.stderr, flush=True)


class AuditFileHandler(logging.Handler):
    """``audit.log`` in one log dir, written so that the writer learns whether a record got in.

    logging's file handlers report a failed write on stderr and go on; their buffer even keeps
    the unwritten rest and writes it later, when what it said may no longer be true. Here each
    record is one ``write()`` of the whole line to an ``O_APPEND`` descriptor, and a failure
    raises. A line cut short by a full disk is taken back (``ftruncate`` to where it began,
    under ``flock`` so that the other processes writing this file wait), so the next record
    starts on a line of its own.

    No fsync per record: tmpfs, ext4 and XFS reserve the space at ``write()`` (a full disk or
    a quota is ENOSPC/EDQUOT there), which is what gating a move needs, and an fsync would add a
    disk rotation per scanned file on a spinning disk. So a record survives a crash of the
    process, but a power loss can take the last seconds of records while the fsynced moves
    they describe stay done. A log dir on NFS may report a full disk only at close: keep it
    local.

    Like ``WatchedFileHandler``, the file is opened again when logrotate moved it away.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        # Scans run in threads, and they share the descriptor, so its flock does not part them.
        self._write_lock = threading.Lock()
        self._fd, self._identity = self._open()

    def write(self, record: logging.LogRecord) -> None:
        """Append ``record`` as one whole line, or raise ``OSError`` leaving the file as it was."""
        line = (self.format(record) + "\n").encode()
        with self._write_lock:
            fd = self._current_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                start = os.fstat(fd).st_size
                try:
                    _write_all(fd, line)
                except OSError:
                    os.ftruncate(fd, start)
                    raise
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def emit(self, record: logging.LogRecord) -> None:
        """logging's contract, for a stray ``log_event`` on the audit logger."""
        try:
            self.write(record)
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        # Closed twice (by configure_logging, again at exit): the number may be reused by then.
        with self._write_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        super().close()

    def _open(self) -> tuple[int, tuple[int, int]]:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        opened = os.fstat(fd)
        return fd, (opened.st_dev, opened.st_ino)

    def _current_fd(self) -> int:
        """The open file, opened again when it was moved away, or when the handler was closed
        while still attached (Prefect's logging setup closes every handler; the stdlib's file
        handlers reopen on the next record, and so does this one)."""
        try:
            on_disk = os.stat(self.path)
            moved = (on_disk.st_dev, on_disk.st_ino) != self._identity
        except FileNotFoundError:
            moved = True
        if moved or self._fd < 0:
            fd, self._identity = self._open()  # may fail: the old one is kept for next time
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = fd
        return self._fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_audit_event(event: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Write one audit record to ``audit.log`` in every log dir (and show it on the console).

    Raises :class:`AuditLogError` naming each file it did not reach; the files it reached keep
    it, and the caller's next record (say, that the file stayed where it was) follows it there.
    """
    logger = logging.getLogger(AUDIT)
    record = logger.makeRecord(logger.name, level, __file__, 0, event, (), None,
                               extra={"fields": fields})
    unwritten = []
    for handler in logger.handlers:
        if isinstance(handler, AuditFileHandler):
            try:
                handler.write(record)
            except OSError as exc:
                unwritten.append(f"{handler.path} ({exc.strerror or exc})")
        else:
            handler.handle(record)
    if unwritten:
        raise AuditLogError(f"audit record not written to {', '.join(unwritten)}")


def audit_event(event: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """An audit record that gates nothing (a download, a webhook): if it cannot be written,
    that is one line on stderr and the work goes on."""
    try:
        write_audit_event(event, level, **fields)
    except AuditLogError as exc:
        warn_on_stderr(f"{event}: {exc}")


def configure_logging(log_dirs: list[Path], *, stdout: bool = True) -> None:
    """Send the three logs to stdout and to their files in each of ``log_dirs``.

    Files use ``WatchedFileHandler`` (the audit log :class:`AuditFileHandler`) so logrotate can
    rotate them under a running server.
    """
    json_lines = JsonLinesFormatter()
    stream = logging.StreamHandler(sys.stdout) if stdout else None
    if stream:
        stream.setFormatter(TextFormatter() if _console.format == "text" else json_lines)
    for name, filename in _FILES.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(_console.level if name == APP else logging.INFO)
        logger.propagate = False
        handlers: list[logging.Handler] = [stream] if stream else []
        for directory in dict.fromkeys(path.absolute() for path in log_dirs):
            directory.mkdir(parents=True, exist_ok=True)
            file = (AuditFileHandler(directory / filename) if name == AUDIT
                    else logging.handlers.WatchedFileHandler(directory / filename))
            file.setFormatter(json_lines)
            handlers.append(file)
        for handler in handlers:
            logger.addHandler(handler)
    # The SSH library's own chatter: only what needs attention, unless asked for more.
    library = logging.getLogger("asyncssh")
    library.setLevel(logging.DEBUG if _console.level <= logging.DEBUG
                     else max(_console.level, logging.WARNING))
    library.propagate = False
    for handler in list(library.handlers):
        library.removeHandler(handler)
    if stream:
        library.addHandler(stream)
