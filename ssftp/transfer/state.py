"""What downloaders and uploaders remember between runs: ``system/transfers.sqlite``.

Downloaders remember each remote file they fetched (size and mtime), so a file left on the
remote server is not fetched again until it changes. Uploaders keep a journal of deliveries in
progress, so a crash between the remote rename and the local archive neither loses the file nor
sends it twice: the next run finds the journal entry and finishes the delivery.

It also keeps the files each kind moved and failed to move, in all (``totals``): the runs are
processes of their own (a Prefect runner's subprocess, or a work pool's worker), and the process
that exports the metrics reads the figures here (``ssftp_transfers_total``, ssftp.metrics).

Runs of different downloaders may be separate processes, so the DB is in WAL mode with a busy
timeout, and every method is one short transaction. Every ``sqlite3`` error is translated here,
into :class:`~ssftp.errors.TransferStateError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from ssftp.errors import TransferStateError
from ssftp.file_stamp import FileStamp
from ssftp.logs import APP, log_event
from ssftp.sqlite_files import connect_shared, translated

logger = logging.getLogger(APP)

STATE_FILE = "transfers.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fetched (
    downloader TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    fetched_at REAL NOT NULL,
    PRIMARY KEY (downloader, remote_path)
);
CREATE TABLE IF NOT EXISTS deliveries (
    uploader TEXT NOT NULL,
    local_path BLOB NOT NULL,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    remote_temp TEXT NOT NULL,
    remote_final TEXT NOT NULL,
    stage TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (uploader, local_path)
);
CREATE TABLE IF NOT EXISTS totals (
    direction TEXT NOT NULL,
    result TEXT NOT NULL,
    files INTEGER NOT NULL,
    PRIMARY KEY (direction, result)
);
"""


@dataclass(frozen=True)
class RemoteStamp:
    """A remote file's identity as far as SFTP tells it: size and modification time."""

    size: int
    mtime: int


class Stage(StrEnum):
    # Sending to the remote temp name; a crash here leaves only a temp file to remove.
    SENDING = "sending"
    # The remote temp file was complete and is being renamed to its final name. From here on
    # the file counts as delivered once the temp name is gone.
    PUBLISHING = "publishing"


@dataclass(frozen=True)
class Delivery:
    uploader: str
    # Relative to clean/.
    local_path: PurePosixPath
    stamp: FileStamp
    remote_temp: str
    remote_final: str
    stage: Stage


class TransferState:
    def __init__(self, path: Path) -> None:
        self.path = path
        with self._translated("open it"):
            self._db = connect_shared(path, timeout=60, schema=_SCHEMA)

    def _translated(self, action: str) -> contextlib.AbstractContextManager[None]:
        return translated(TransferStateError, f"transfer state {self.path}", action)

    def _run(self, action: str, sql: str,
             parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """One statement (one transaction), its rows; TransferStateError if it failed."""
        with self._translated(action):
            return self._db.execute(sql, parameters).fetchall()

    @classmethod
    def open(cls, system: Path) -> TransferState:
        return cls(system / STATE_FILE)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TransferState:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- downloads ---------------------------------------------------------------------

    def fetched(self, downloader: str, remote_path: str) -> RemoteStamp | None:
        rows = self._run("read what was fetched",
                         "SELECT size, mtime FROM fetched WHERE downloader = ? AND remote_path = ?",
                         (downloader, _stored(remote_path)))
        return RemoteStamp(*rows[0]) if rows else None

    def record_fetched(self, downloader: str, remote_path: str, stamp: RemoteStamp) -> None:
        self._run("record a fetch", "INSERT OR REPLACE INTO fetched VALUES (?, ?, ?, ?, ?)",
                  (downloader, _stored(remote_path), stamp.size, stamp.mtime, time.time()))

    def forget_fetched(self, downloader: str, remote_path: str) -> None:
        """After a remote delete: a new file of the same name is a new file."""
        self._run("forget a fetch",
                  "DELETE FROM fetched WHERE downloader = ? AND remote_path = ?",
                  (downloader, _stored(remote_path)))

    # -- uploads -----------------------------------------------------------------------

    def deliveries(self, uploader: str) -> list[Delivery]:
        rows = self._run(
            "read the deliveries",
            "SELECT local_path, inode, size, mtime_ns, remote_temp, remote_final, stage "
            "FROM deliveries WHERE uploader = ? ORDER BY updated_at", (uploader,))
        return [Delivery(uploader, PurePosixPath(os.fsdecode(local)),
                         FileStamp(inode, size, mtime_ns), os.fsdecode(temp), os.fsdecode(final),
                         Stage(stage))
                for local, inode, size, mtime_ns, temp, final, stage in rows]

    def save_delivery(self, delivery: Delivery) -> None:
        stamp = delivery.stamp
        self._run("save a delivery",
                  "INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (delivery.uploader, os.fsencode(delivery.local_path), stamp.inode, stamp.size,
                   stamp.mtime_ns, _stored(delivery.remote_temp), _stored(delivery.remote_final),
                   delivery.stage.value, time.time()))

    def finish_delivery(self, uploader: str, local_path: PurePosixPath) -> None:
        self._run("finish a delivery",
                  "DELETE FROM deliveries WHERE uploader = ? AND local_path = ?",
                  (uploader, os.fsencode(local_path)))

    # -- totals, for the metrics -------------------------------------------------------

    def add_to_totals(self, direction: str, results: Iterable[str]) -> None:
        """Count one run's files moved (``ok``) and failed, in one statement (so one
        transaction)."""
        counted = Counter(results)
        if not counted:
            return
        self._run(
            "count the files",
            "INSERT INTO totals VALUES " + ", ".join(["(?, ?, ?)"] * len(counted))
            + " ON CONFLICT (direction, result) DO UPDATE SET files = files + excluded.files",
            [value for result, files in counted.items() for value in (direction, result, files)])

    def totals(self) -> dict[tuple[str, str], int]:
        """Files by (direction, result), since the data root was made."""
        rows = self._run("read the totals", "SELECT direction, result, files FROM totals")
        return {(direction, result): files for direction, result, files in rows}


def stored_totals(system: Path) -> dict[tuple[str, str], int]:
    """The totals kept under ``system/``, read when a scrape asks: none, and no file made,
    before the first scheduled transfer has run. A file that cannot be read leaves them out of
    this scrape (with a log line), not the whole scrape."""
    if not (system / STATE_FILE).exists():
        return {}
    try:
        with TransferState.open(system) as state:
            return state.totals()
    except TransferStateError as exc:
        log_event(logger, "scheduled transfer totals not read", logging.WARNING,
                  error=str(exc))
        return {}


def _stored(remote_path: str) -> str | bytes:
    """A remote path as the DB keeps it: text, or its bytes when it is not UTF-8 (a remote
    server's Latin-1 name, listed with surrogates). A BLOB equals no text, so the two never
    collide, and rows written before stay as they were."""
    try:
        remote_path.encode()
    except UnicodeEncodeError:
        return os.fsencode(remote_path)
    return remote_path
