"""ssftp.notify.outbox on real SQLite files: what is stored survives the process, is handed out
until delivered, is shared by processes, and fails with one clear error on a full disk or a
file that is not an outbox."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ssftp.errors import OutboxError
from ssftp.notify.outbox import Outbox, StoredNotification
from tests.support.system import tmpfs


def owed_item(key: str, body: bytes = b"{}",
              url: str = "http://127.0.0.1:9/hook") -> StoredNotification:
    return StoredNotification(id=str(uuid.uuid4()), event="virusFound", url=url,
                              file=f"acme/{key}", body=body)


def all_owed(outbox: Outbox) -> list[str]:
    return outbox.owed(now=time.time() + 1, limit=10_000)


def test_what_is_stored_is_owed_until_delivered(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    first, second = owed_item("a", b'{"n": 1}'), owed_item("b")
    outbox.add([first, second])
    assert all_owed(outbox) == [first.id, second.id]
    assert outbox.pending([second.id, first.id]) == [first, second]

    outbox.failed(first.id, "HTTP 503", retry_in=3600)
    assert all_owed(outbox) == [second.id]  # not due again for an hour
    assert outbox.owed(now=time.time() + 7200, limit=10) == [second.id, first.id]
    assert outbox.pending([first.id])[0].attempts == 1
    assert outbox.pending([first.id])[0].backoff == 1

    outbox.delivered(first.id)
    assert all_owed(outbox) == [second.id]
    assert outbox.pending([first.id]) == []


def test_storing_a_notification_again_keeps_one_row_and_its_delivery(tmp_path: Path) -> None:
    """Storing is idempotent: a caller that retries an ``add`` it is not sure of makes no
    second notification, nor one owed again when the first was delivered."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    item = owed_item("a")
    outbox.add([item])
    outbox.add([item])
    assert all_owed(outbox) == [item.id]
    outbox.delivered(item.id)
    outbox.add([item])
    assert all_owed(outbox) == []


def test_only_due_notifications_are_owed_and_at_most_the_limit(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.add([owed_item(str(n)) for n in range(5)])
    assert outbox.owed(now=time.time() - 3600, limit=10) == []
    assert len(outbox.owed(now=time.time() + 1, limit=3)) == 3


def test_an_abandoned_notification_is_no_longer_owed(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    item = owed_item("a")
    outbox.add([item])
    outbox.abandoned(item.id, "webhook no longer configured")
    assert all_owed(outbox) == []
    assert outbox.pending([item.id]) == []


def test_a_stored_notification_survives_a_killed_process(tmp_path: Path) -> None:
    """``add`` returns only once the row is committed: a process killed right after it (as
    the move that follows might be) leaves the notification owed."""
    path = tmp_path / "outbox.sqlite3"
    item = owed_item("killed")
    script = (
        "import os, signal, sys\n"
        "from ssftp.notify.outbox import Outbox, StoredNotification\n"
        f"Outbox(__import__('pathlib').Path({str(path)!r})).add([StoredNotification("
        f"{item.id!r}, {item.event!r}, {item.url!r}, {item.file!r}, {item.body!r})])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -signal.SIGKILL
    assert Outbox(path).pending([item.id]) == [item]


def test_processes_sharing_the_outbox_lose_nothing(tmp_path: Path) -> None:
    """Workers sharing a data root write one outbox at once: a busy database is waited for,
    not an error."""
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import uuid\n"
        "from ssftp.notify.outbox import Outbox, StoredNotification\n"
        f"box = Outbox(Path({str(path)!r}))\n"
        "for n in range(200):\n"
        "    item = StoredNotification(str(uuid.uuid4()), 'virusFound', 'http://x/',\n"
        "                              f'{sys.argv[1]}-{n}', b'')\n"
        "    box.add([item])\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, name]) for name in "abc"]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    assert len(all_owed(Outbox(path))) == 600


def test_a_full_disk_is_one_clear_error_and_keeps_what_was_stored(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "system", "256k") as system:
        outbox = Outbox(system / "outbox.sqlite3")
        kept = owed_item("kept")
        outbox.add([kept])
        filler = system / "filler"
        with pytest.raises(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * 65536)
        big = [owed_item(f"big-{n}", os.urandom(4096)) for n in range(64)]
        with pytest.raises(OutboxError) as raised:
            outbox.add(big)
        message = str(raised.value)
        assert "\n" not in message
        assert str(system / "outbox.sqlite3") in message
        assert "full" in message
        filler.unlink()
        assert all_owed(outbox) == [kept.id]
        outbox.close()


def test_a_file_that_is_not_an_outbox_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"not a database, just bytes " * 100)
    with pytest.raises(OutboxError, match=f"webhook outbox {path}: could not open"):
        Outbox(path)


def test_an_outbox_of_a_newer_ssftp_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(OutboxError, match="newer ssftp"):
        Outbox(path)


def test_settled_rows_are_forgotten_after_a_while(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    done, owed = owed_item("done"), owed_item("owed")
    outbox.add([done, owed])
    outbox.delivered(done.id)
    assert outbox.forget_settled(settled_before=time.time() + 1) == 1
    assert outbox.pending([done.id, owed.id]) == [owed]


def steps(step: int) -> float:
    return 100.0 * step


def test_a_receiver_down_makes_all_it_is_owed_wait_one_step_longer(tmp_path: Path) -> None:
    """Everything owed to the failed receiver waits, tried or not, in this run or not; its
    wait is one step beyond the longest of them; what is owed to others is left alone."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    failed, waiting, later = (owed_item(key) for key in ("failed", "waiting", "later"))
    other = owed_item("other", url="http://127.0.0.1:9/other")
    outbox.add([failed, waiting, later, other])
    outbox.failed(later.id, "HTTP 503", retry_in=1000)  # already waits longer than a step

    assert outbox.receiver_down(failed.id, "HTTP 503", retry_in=steps) == (2, steps(2))

    now = time.time()
    assert outbox.owed(now=now + 1, limit=10) == [other.id]
    assert outbox.owed(now=now + steps(2) + 1, limit=10) == [other.id, failed.id, waiting.id]
    assert outbox.owed(now=now + 1001, limit=10)[-1] == later.id  # not made due sooner
    by_id = {item.id: item for item in outbox.pending([failed.id, waiting.id, later.id])}
    assert [(by_id[item.id].attempts, by_id[item.id].backoff)
            for item in (failed, waiting, later)] == [(1, 2), (0, 2), (1, 2)]

    outbox.receiver_down(waiting.id, "HTTP 503", retry_in=steps)  # the next cycle: one longer
    assert outbox.pending([waiting.id])[0].backoff == 3
    assert outbox.owed(now=time.time() + steps(3) - 10, limit=10) == [other.id]


def test_deferred_notifications_wait_untried(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    first, second = owed_item("a"), owed_item("b")
    outbox.add([first, second])
    outbox.deferred([first.id], until=time.time() + 3600)
    assert all_owed(outbox) == [second.id]
    assert outbox.pending([first.id])[0].attempts == 0


def test_an_outbox_of_schema_1_is_upgraded_and_keeps_what_it_owed(tmp_path: Path) -> None:
    """The file of an ssftp before backoff was counted per receiver: its rows stay owed, as
    due as they were, their backoff as far as their failed attempts took it."""
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE notification (id TEXT PRIMARY KEY, created REAL NOT NULL,
                event TEXT NOT NULL, url TEXT NOT NULL, file TEXT NOT NULL, body BLOB NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, due REAL NOT NULL,
                settled REAL, outcome TEXT);
            CREATE INDEX owed ON notification (due) WHERE settled IS NULL;
            INSERT INTO notification VALUES ('a', 0, 'virusFound', 'http://x/', 'acme/a', X'7B7D',
                                             3, 'HTTP 503', 0, NULL, NULL);
            PRAGMA user_version=1;
        """)
    outbox = Outbox(path)
    assert all_owed(outbox) == ["a"]
    assert outbox.pending(["a"]) == [StoredNotification("a", "virusFound", "http://x/",
                                                        "acme/a", b"{}", 3, 3)]
    outbox.close()
    Outbox(path).close()  # opened again: nothing more to upgrade
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
