"""The SQLite files under ``system/`` that several processes share (the transfer state, the
defender's bans): opened the one way that lets them, and their errors made ours.

WAL mode lets readers go on while one process writes; the busy timeout makes a writer wait
for another's transaction instead of failing at once; ``synchronous=FULL`` makes a commit
survive a power loss. Every ``sqlite3`` error becomes the caller's own
:class:`~ssftp.errors.SsftpError`, naming the file and what could not be done.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ssftp.errors import SsftpError


def connect_shared(path: Path, *, timeout: float, schema: str,
                   check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (each statement its own transaction), with ``schema``
    made if missing."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                         check_same_thread=check_same_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


@contextlib.contextmanager
def translated(error: type[SsftpError], what: str, action: str) -> Iterator[None]:
    """Raise ``error("<what>: could not <action>: <sqlite's reason>")`` for a sqlite3 error."""
    try:
        yield
    except sqlite3.Error as exc:
        raise error(f"{what}: could not {action}: {exc}") from None
