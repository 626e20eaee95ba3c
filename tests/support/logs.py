"""The logs a test reads: the application log as records, the JSON lines of a log directory, and
the audit log of a data root (logging is process-wide, so it is restored afterwards)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from ssftp import logs
from ssftp.logs import APP
from tests.support.waiting import wait_for


@contextlib.contextmanager
def app_log_records() -> Iterator[list[logging.LogRecord]]:
    """The records the application log (``ssftp``) takes while the block runs."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger(APP)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def log_entries(gateway_or_layout_log: Path, filename: str = "ssftp.log") -> list[dict]:
    path = gateway_or_layout_log / filename
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def wait_for_log(log_dir: Path, predicate, *, filename: str = "ssftp.log",
                 what: str = "log line") -> dict:
    """The first entry of the JSON log ``log_dir/filename`` that ``predicate`` accepts, once
    it has been written."""
    return wait_for(f"{what} in {log_dir / filename}", lambda: next(
        (entry for entry in log_entries(log_dir, filename) if predicate(entry)), None))


@contextlib.contextmanager
def logging_into(log_dir: Path) -> Iterator[Path]:
    """The logs written to ``log_dir`` (its audit.log is yielded); logging is process-global,
    so it is restored afterwards, and every file handler is closed (a tmpfs can be unmounted)."""
    names = (logs.APP, logs.TRANSFER, logs.AUDIT, "asyncssh")
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate)
        logger.handlers = []  # so configure_logging does not close the handlers of others
    logs.configure_logging([log_dir], stdout=False)
    try:
        yield log_dir / "audit.log"
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                handler.close()
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def json_lines(path: Path) -> list[dict]:
    """The records of the JSON-lines log ``path`` (none when it does not exist yet). Another
    process may be writing it: what follows the last newline is a record half written (maybe
    cut inside a character), left for the next read; a CI run failed parsing one."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1].decode()
    return [json.loads(line) for line in complete.split("\n") if line.strip()]
