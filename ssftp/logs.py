"""Logging to the console and ``log/``: the application, transfer and audit logs.

Each record is one event with named fields (``log_event(logger, "login", user=..., ok=True)``),
so the logs can be searched and shipped without parsing prose. The files under ``log/`` are
always JSON lines; the console is JSON lines too, or one readable line per event for a person
at a terminal (:func:`set_console`). Field names that suggest a secret are masked on the way
out, as a last line of defence: callers never pass secrets.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ssftp.config.schema import SsftpConfig
    from ssftp.layout import DataLayout

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
        entry.update(_masked(getattr(record, "fields", {})))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ASCII-escaped: a file name that is not valid UTF-8 (bytes from a foreign writer) must
        # not make the line unwritable; JSON readers turn the escapes back into text.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01 warning  config warning  detail=...``: the console for a person."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(f"{key}={value}" for key, value in
                          _masked(getattr(record, "fields", {})).items())
        line = f"{when} {record.levelname.lower():<8} {record.getMessage()}"
        line = f"{line}  {fields}" if fields else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return printable(line)


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


def log_dirs(layout: DataLayout, config: SsftpConfig) -> list[Path]:
    """Where the logs go: the data root's log/, plus each ``logDests`` file destination."""
    extra = [Path(d.props["path"]) for d in config.log_dests if d.kind == "file"]
    return [layout.log, *extra]


def configure_logging(log_dirs: list[Path], *, stdout: bool = True) -> None:
    """Send the three logs to stdout and to their files in each of ``log_dirs``.

    Files use ``WatchedFileHandler`` so logrotate can rotate them under a running server.
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
            file = logging.handlers.WatchedFileHandler(directory / filename)
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
