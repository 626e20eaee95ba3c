"""ssftp.runtime.clamd_daemon with a real clamd: a start that fails says why (from this start
only), each clamd log line is written once, and a killed clamd is restarted and its death
logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from ssftp.errors import ClamdStartError
from ssftp.logs import APP
from ssftp.runtime.clamd_daemon import ClamdDaemon, supervise
from ssftp.scan.database import TEST_SIGNATURES
from tests.support.logs import app_log_records


def test_daemon_start_failure_is_explained(tmp_path):
    with pytest.raises(Exception, match="clamd did not start"):
        ClamdDaemon.start(tmp_path / "run", database=tmp_path / "empty-db", ready_timeout=30)


# --- clamd's own output, and a supervised clamd -------------------------------------------


LOCK_LOG = """
import fcntl, sys, time
log = open(sys.argv[1], "a")
fcntl.lockf(log, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(300)
"""


def test_a_failed_clamd_start_says_why_from_this_start_only(tmp_path, started):
    """clamd prints why it cannot start (its log is locked) on its console, before its log
    is open: that reaches the error, and an earlier clamd's log lines do not."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "clamd.log").write_text("an earlier clamd's last words\n")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_LOG, str(run_dir / "clamd.log")],
                              stdout=subprocess.PIPE)
    started.append(holder)
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    with pytest.raises(ClamdStartError) as failed:
        ClamdDaemon.start(run_dir, database=TEST_SIGNATURES, ready_timeout=60)
    message = str(failed.value)
    assert "Failed to lock the log file" in message
    assert "earlier clamd" not in message


def test_a_clamd_writes_each_log_line_once(tmp_path):
    """clamd in the foreground echoes its log lines on its console: that no longer goes to
    clamd.log too (each line twice, past clamd's own 1 MB cap), but to the kept tail."""
    daemon = ClamdDaemon.start(tmp_path / "run", database=TEST_SIGNATURES)
    try:
        assert "Self checking every" in daemon.console_tail()
    finally:
        daemon.stop()
    lines = daemon.log.read_text().splitlines()
    assert len([line for line in lines if "Self checking every" in line]) == 1, lines
    assert sorted(path.name for path in daemon.run_dir.iterdir()) == \
        ["clamd.conf", "clamd.log", "tmp"]


async def test_supervise_restarts_a_killed_clamd_and_logs_how_it_died(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=APP)  # "clamd restarted" is an info line
    pid_file = tmp_path / "clamd.pid"
    daemon = ClamdDaemon.start(tmp_path / "run", database=TEST_SIGNATURES, pid_file=pid_file)
    first = daemon.process.pid
    with app_log_records() as records:
        supervisor = asyncio.create_task(supervise(daemon, poll_seconds=0.1))
        try:
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while not [r for r in records if r.getMessage() == "clamd restarted"]:
                assert time.monotonic() < deadline, "no 'clamd restarted' within 60 s"
                await asyncio.sleep(0.1)
            assert json.loads(pid_file.read_text())["pid"] == daemon.process.pid != first
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            daemon.stop()
    (died,) = [r.__dict__["fields"] for r in records if r.getMessage() == "clamd died"]
    assert died["exit"] == "killed by SIGKILL" and died["pid"] == first
    assert died["restart_in_seconds"] == 1
    assert "Self checking every" in died["log_tail"]
    assert not pid_file.exists()  # stopped cleanly: nothing for a next start to stop
