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

A notification counts its ``attempts`` (POSTs with their retries, each a Prefect task run)
apart from its ``backoff``: how many times in a row the wait before its next attempt was
lengthened. A dead receiver lengthens the wait of everything owed to it at once
(:meth:`Outbox.receiver_down`), also of what was never tried, so its backoff grows per
receiver, not per notification, and a cycle tries one of them, not all.

Every ``sqlite3`` error is translated here, into :class:`~ssftp.errors.OutboxError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ssftp.errors import OutboxError

# Bumped when the table changes; a newer file than this code understands is refused.
SCHEMA_VERSION = 2
# How long a writer waits for another process's transaction before it fails.
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS notification (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        file TEXT NOT NULL,
        body BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        due REAL NOT NULL,
        settled REAL,
        outcome TEXT,
        backoff INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS owed ON notification (due) WHERE settled IS NULL",
    "CREATE INDEX IF NOT EXISTS owed_by_url ON notification (url) WHERE settled IS NULL",
)
# Schema 1 had no backoff column: a notification's wait grew with its own attempts.
_FROM_SCHEMA_1 = (
    "ALTER TABLE notification ADD COLUMN backoff INTEGER NOT NULL DEFAULT 0",
    "UPDATE notification SET backoff = attempts",
)


@dataclass(frozen=True)
class StoredNotification:
    """One POST owed to one webhook, as the outbox keeps it."""

    id: str  # a UUID, made when the notification is; the receiver's ``eventId``
    event: str
    url: str
    file: str  # printable, for run names and logs
    body: bytes
    attempts: int = 0  # POSTs made, each with its retries
    backoff: int = 0  # waits lengthened in a row: the next is ``backoff + 1`` steps long


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
        # In one transaction: processes opening an older file at once upgrade it once.
        with self._transaction("open") as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(f"webhook outbox {self.path} was written by a newer ssftp "
                                  f"(schema {version}, this one knows {SCHEMA_VERSION})")
            for statement in (_FROM_SCHEMA_1 if version == 1 else ()) + _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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
        """Store notifications durably, all or none, due at once. A row whose id is stored
        already is left as it is: it is the same notification, perhaps delivered already."""
        now = time.time()
        rows = [(item.id, now, item.event, item.url, item.file, item.body, now)
                for item in items]
        if not rows:
            return
        with self._transaction("store notifications") as db:
            db.executemany("INSERT OR IGNORE INTO notification "
                           "(id, created, event, url, file, body, due) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def pending(self, ids: Sequence[str]) -> list[StoredNotification]:
        """Those of ``ids`` still owed, in the order they were stored."""
        found: list[StoredNotification] = []
        with self._lock, self._translated("read notifications"):
            for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.extend(StoredNotification(*row) for row in self._db.execute(
                    "SELECT id, event, url, file, body, attempts, backoff "
                    f"FROM notification WHERE settled IS NULL AND id IN ({marks}) "
                    "ORDER BY rowid",
                    chunk))
        return found

    def owed(self, *, now: float, limit: int) -> list[str]:
        """Ids of the notifications due by ``now`` and not settled, the longest due first:
        what is sent after a scan, after a restart, and again after a failed delivery."""
        with self._lock, self._translated("list owed notifications"):
            return [row[0] for row in self._db.execute(
                "SELECT id FROM notification WHERE settled IS NULL AND due <= ? "
                "ORDER BY due, rowid LIMIT ?", (now, limit))]

    def delivered(self, notification_id: str) -> None:
        with self._transaction("mark a notification delivered") as db:
            db.execute("UPDATE notification SET settled = ?, outcome = 'delivered', "
                       "attempts = attempts + 1 WHERE id = ?", (time.time(), notification_id))

    def abandoned(self, notification_id: str, reason: str) -> None:
        """Never to be sent (its webhook is no longer configured): settled, with the reason."""
        with self._transaction("mark a notification abandoned") as db:
            db.execute("UPDATE notification SET settled = ?, outcome = 'abandoned', "
                       "last_error = ? WHERE id = ?", (time.time(), reason, notification_id))

    def failed(self, notification_id: str, error: str, *, retry_in: float) -> None:
        """A delivery (with all its retries) failed: still owed, due again in ``retry_in``
        seconds, its backoff one step longer."""
        with self._transaction("record a failed delivery") as db:
            db.execute("UPDATE notification SET attempts = attempts + 1, last_error = ?, "
                       "backoff = backoff + 1, due = ? WHERE id = ?",
                       (error, time.time() + retry_in, notification_id))

    def receiver_down(self, notification_id: str, error: str, *,
                      retry_in: Callable[[int], float]) -> tuple[int, float]:
        """A delivery failed, and its receiver took nothing else: everything owed to the same
        URL waits for one backoff step more than the longest of them, ``retry_in(step)``
        seconds (none sooner than it was due already). Returns how many others wait, and
        that wait."""
        receiver = "url = (SELECT url FROM notification WHERE id = ?) AND settled IS NULL"
        with self._transaction("defer a receiver's notifications") as db:
            db.execute("UPDATE notification SET attempts = attempts + 1, last_error = ? "
                       "WHERE id = ?", (error, notification_id))
            step: int = db.execute(f"SELECT COALESCE(MAX(backoff), 0) + 1 FROM notification "
                                   f"WHERE {receiver}", (notification_id,)).fetchone()[0]
            wait = retry_in(step)
            waiting: int = db.execute(
                f"UPDATE notification SET backoff = ?, due = MAX(due, ?) WHERE {receiver}",
                (step, time.time() + wait, notification_id)).rowcount
            return max(waiting - 1, 0), wait

    def deferred(self, ids: Sequence[str], *, until: float) -> None:
        """Not attempted (their receiver failed another one): still owed, due at ``until``
        at the soonest, their backoff as it was."""
        with self._transaction("defer notifications") as db:
            db.executemany("UPDATE notification SET due = MAX(due, ?) WHERE id = ?",
                           [(until, item) for item in ids])

    def forget_settled(self, *, settled_before: float) -> int:
        """Remove rows settled before the given time (the file would grow forever)."""
        with self._transaction("remove settled notifications") as db:
            return db.execute("DELETE FROM notification WHERE settled < ?",
                              (settled_before,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
