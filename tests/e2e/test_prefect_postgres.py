"""``ssftp up`` on PostgreSQL: the Prefect server it starts takes the database of
``PREFECT_API_DATABASE_CONNECTION_URL`` (a throwaway cluster, testkit/postgres.py), and
scan runs overlap there (``scanning.concurrentRuns: auto`` is 4), each file still scanned once.

One PostgreSQL and one ``ssftp up`` for the module: Prefect migrating a new database takes
most of its time.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.postgres import postgres_cluster
from testkit.sftp_client import run_sftp
from tests.support.cli import child_env
from tests.support.up import ACCOUNT_DIR, PARTNER, PARTNER_PW, Up, up_for_module
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with postgres_cluster() as database, up_for_module(
            tmp_path_factory.mktemp("up-postgres"),
            child_env(PREFECT_API_DATABASE_CONNECTION_URL=database.url)) as instance:
        yield instance


def scan_runs(up: Up) -> list[dict[str, Any]]:
    response = httpx.post(f"{up.api}/flow_runs/filter", timeout=30,
                          json={"flows": {"name": {"any_": ["scan"]}}, "limit": 50})
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return runs


def running(up: Up) -> list[dict[str, Any]]:
    return [run for run in scan_runs(up) if run["state_type"] == "RUNNING"]


def completed(up: Up, count: int) -> list[dict[str, Any]] | None:
    runs = [run for run in scan_runs(up) if run["state_type"] == "COMPLETED"]
    return runs if len(runs) == count else None


def scans_of(up: Up) -> dict[str, int]:
    """How many scan records the audit log has for each file."""
    log = up.data / "log" / "audit.log"
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    counts: dict[str, int] = {}
    for event in events:
        if event.get("event") == "scan":
            counts[event["file"]] = counts.get(event["file"], 0) + 1
    return counts


def clamd_pid(up: Up) -> int:
    pid: int = json.loads((up.data / "system" / "clamd.pid").read_text())["pid"]
    return pid


def test_scan_runs_overlap_on_postgresql_and_each_file_is_scanned_once(
        up: Up, tmp_path: Path) -> None:
    """clamd is paused (SIGSTOP) so that each run waits in its scan: a second upload's run
    starts beside the first's, as a third's, instead of waiting for them (on SQLite, one run
    per lane). Then clamd goes on, and every file is scanned exactly once."""
    assert '"event": "scan runs at once", "runs": 4, "reason": "Prefect on PostgreSQL"' \
        in up.stdout, up.tail()
    assert not list((up.data / "system" / "prefect").glob("*.db")), "Prefect used SQLite"
    names = ["first.csv", "second.csv", "third.csv"]
    pid = clamd_pid(up)
    os.kill(pid, signal.SIGSTOP)
    try:
        for at, name in enumerate(names, start=1):
            (tmp_path / name).write_bytes(f"{name}\n".encode() * 100)
            result = run_sftp(up.sftp_port, PARTNER, [f"put {name}"], cwd=tmp_path,
                              password=PARTNER_PW, timeout=120)
            assert result.returncode == 0, result.stderr
            wait_for(f"{at} scan runs running at once", lambda at=at: len(running(up)) == at,
                     details=lambda: repr(scan_runs(up)) + up.tail())
    finally:
        os.kill(pid, signal.SIGCONT)
    clean = up.data / "clean" / ACCOUNT_DIR
    wait_for("the three files in clean/",
             lambda: all((clean / name).is_file() for name in names), details=up.tail)
    runs = wait_for("three completed scan runs", lambda: completed(up, 3),
                    details=lambda: repr(scan_runs(up)))
    starts = [datetime.fromisoformat(run["start_time"]) for run in runs]
    ends = [datetime.fromisoformat(run["end_time"]) for run in runs]
    assert max(starts) < min(ends), "the runs' Running intervals do not overlap"
    assert scans_of(up) == {f"{ACCOUNT_DIR}/{name}": 1 for name in names}
