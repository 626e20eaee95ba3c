"""What notifications owed to a dead webhook receiver cost Prefect's database, per redelivery
cycle: flow runs, task runs, task run states, logs, events, and the SQLite file's growth.

    PYTHONPATH=<checkout> python scripts/webhook_backlog.py [--notifications 200] [--cycles 3]

Runs the notify flow (``flows.notify.NotifyRuns``, the checkout's own) against Prefect's test
harness (a real server on a temporary SQLite file). The receiver is dead: a port nothing
listens on. The webhook keeps its default 3 retries, without their delays (which change the
time taken, not what is stored). Between cycles every owed notification is made due at once
(the outbox's ``due`` column set to 0) instead of waiting out the redelivery backoff. Only
``NotifyRuns(outbox, webhooks).send_owed()`` and ``Outbox.add`` are used, so the same script
measures an older checkout too.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

TABLES = ("flow_run", "task_run", "task_run_state", "flow_run_state", "log", "events")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        found = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in TABLES if table in found}


def size(database: Path) -> int:
    """The database's bytes once its write-ahead log is folded in."""
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return database.stat().st_size


def settled_counts(database: Path) -> dict[str, int]:
    """The counts once the server has stored what the run sent it (task runs, their states
    and events arrive through Prefect's event pipeline, after the flow returns)."""
    from deployments.prefect_flush import flush_prefect_workers

    flush_prefect_workers()
    last: dict[str, int] = {}
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < 5:
        now = counts(database)
        if now != last:
            last, stable_since = now, time.monotonic()
        time.sleep(0.5)
    return last


def make_due(outbox_path: Path) -> None:
    with sqlite3.connect(outbox_path) as db:
        db.execute("UPDATE notification SET due = 0 WHERE settled IS NULL")


def measure(notifications: int, cycles: int) -> None:
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.notify import NotifyRuns
    from ssftp.config.schema import Webhook
    from ssftp.notify.outbox import Outbox, StoredNotification

    url = f"http://127.0.0.1:{closed_port()}/hook"
    hooks = [Webhook.model_validate({"name": "virusFound", "url": url, "retries": 3,
                                     "retryDelaySeconds": 0})]
    with tempfile.TemporaryDirectory() as work, prefect_test_harness(server_startup_timeout=120):
        database = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
        outbox_path = Path(work) / "outbox.sqlite3"
        outbox = Outbox(outbox_path)
        outbox.add(StoredNotification(str(uuid.uuid4()), "virusFound", url, f"acme/{n}.exe",
                                      b'{"filePath": "acme/%d.exe"}' % n)
                   for n in range(notifications))
        runs = NotifyRuns(outbox, lambda: hooks)
        before, start = settled_counts(database), size(database)
        print(f"{notifications} notifications owed to a dead receiver (retries: 3)")
        print("cycle  " + "  ".join(f"{table:>15}" for table in before) + "  db growth (KiB)")
        previous, previous_size = before, start
        for cycle in range(1, cycles + 1):
            make_due(outbox_path)
            asyncio.run(runs.send_owed())
            now, now_size = settled_counts(database), size(database)
            print(f"{cycle:5d}  " + "  ".join(f"{now[t] - previous[t]:>15d}" for t in now)
                  + f"  {(now_size - previous_size) / 1024:15.0f}")
            previous, previous_size = now, now_size
        print("total  " + "  ".join(f"{previous[t] - before[t]:>15d}" for t in previous)
              + f"  {(previous_size - start) / 1024:15.0f}")
        owed = len(outbox.owed(now=time.time() + 10**9, limit=10 * notifications))
        print(f"still owed: {owed} of {notifications}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=3)
    options = parser.parse_args()
    measure(options.notifications, options.cycles)


if __name__ == "__main__":
    main()
