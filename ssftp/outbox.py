"""The webhook outbox: a notification is stored before the move that causes it, and is
delivered from the store.

A webhook kept only in memory is lost when the process dies between the move and the POST
(in a crash test, 9 of 52 virusFound webhooks were never sent). So each notification is first
committed to SQLite under ``system/`` (WAL with ``synchronous=FULL``: once :meth:`Outbox.add`
returns, the row survives a power cut), then the notify flow delivers it and marks it
delivered. What a crash left undelivered is sent after the restart. Delivery is therefore at
least once. A notification's id, which receivers see as ``eventId``, stays the same when it is
sent again, so a receiver can drop duplicates.

Several workers may share one data root (each claims its files by rename); SQLite's locking
lets them share the outbox too, and ``busy_timeout`` makes a writer wait for another instead
of failing. No secret is stored: a row names its webhook by event and URL, and the secret,
timeout and retries come from the config when it is delivered.

Every ``sqlite3`` error is translated here, into :class:`~ssftp.errors.OutboxError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ssftp.errors import OutboxError

# Bumped when the table changes; a newer file than this code understands is refused.
SCHEMA_VERSION = 1
# How long a writer waits for another process's transaction before it fails.
BUSY_TIMEOUT_MS = 10_000
# Ids are UUIDv5 in this namespace, so the same key always gives the same id.
_NAMESPACE = uuid.UUID("6f1b9d1e-8a55-4c1e-9a8e-5f3c2b7d4a10")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notification (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    file TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered REAL
);
CREATE INDEX IF NOT EXISTS undelivered ON notification (created) WHERE delivered IS NULL;
"""


def event_id(key: str) -> str:
    """The id of the notification that ``key`` (what caused it, and for whom) describes.

    Derived, not random: a file scanned again after a crash, before its notification was
    acknowledged, gives the same key, so the outbox keeps one row and the receiver one event.
    """
    return str(uuid.uuid5(_NAMESPACE, key))


@dataclass(frozen=True)
class StoredNotification:
    """One POST owed to one webhook, as the outbox keeps it."""

    id: str
    event: str
    url: str
    file: str  # printable, for run names and logs
    body: bytes
    attempts: int = 0


class Outbox:
    """The notifications not yet delivered, in one SQLite file; safe to use from threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        with self._translated("open"):
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
            try:
                self._prepare()
            except BaseException:
                self._db.close()
                raise

    def _prepare(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutboxError(f"webhook outbox {self.path} was written by a newer ssftp "
                              f"(schema {version}, this one knows {SCHEMA_VERSION})")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxError(f"webhook outbox {self.path}: could not {action}: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translated(action):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, items: Iterable[StoredNotification]) -> None:
        """Store notifications durably, all or none. A row whose id is stored already is left
        as it is: it is the same notification, perhaps delivered already."""
        rows = [(item.id, time.time(), item.event, item.url, item.file, item.body)
                for item in items]
        if not rows:
            return
        with self._transaction("store notifications") as db:
            db.executemany("INSERT OR IGNORE INTO notification "
                           "(id, created, event, url, file, body) VALUES (?, ?, ?, ?, ?, ?)",
                           rows)

    def undelivered(self, ids: Sequence[str]) -> list[StoredNotification]:
        """Those of ``ids`` still owed, in the order they were stored."""
        found: list[StoredNotification] = []
        with self._lock, self._translated("read notifications"):
            for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.extend(StoredNotification(*row) for row in self._db.execute(
                    "SELECT id, event, url, file, body, attempts FROM notification "
                    f"WHERE delivered IS NULL AND id IN ({marks}) ORDER BY created",
                    chunk))
        return found

    def owed(self, *, stored_before: float, limit: int) -> list[str]:
        """Ids of notifications stored before ``stored_before`` and still undelivered, oldest
        first: what a restart (or a later retry) sends again."""
        with self._lock, self._translated("list undelivered notifications"):
            return [row[0] for row in self._db.execute(
                "SELECT id FROM notification WHERE delivered IS NULL AND created < ? "
                "ORDER BY created LIMIT ?", (stored_before, limit))]

    def delivered(self, notification_id: str) -> None:
        with self._transaction("mark a notification delivered") as db:
            db.execute("UPDATE notification SET delivered = ?, attempts = attempts + 1 "
                       "WHERE id = ?", (time.time(), notification_id))

    def failed(self, notification_id: str, error: str) -> None:
        """A delivery (with all its retries) failed; the notification stays owed."""
        with self._transaction("record a failed delivery") as db:
            db.execute("UPDATE notification SET attempts = attempts + 1, last_error = ? "
                       "WHERE id = ?", (error, notification_id))

    def forget_delivered(self, *, delivered_before: float) -> int:
        """Remove rows delivered before the given time (the file would grow forever)."""
        with self._transaction("remove delivered notifications") as db:
            return db.execute("DELETE FROM notification WHERE delivered < ?",
                              (delivered_before,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
