"""ssftp.runtime.pid_files: what a start does with a killed predecessor's leftovers (real
processes of this test's own: ``sleep``), told apart from a reused pid by its start time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from ssftp.errors import ClamdStartError
from ssftp.runtime.clamd_daemon import (
    is_clamd,
)
from ssftp.runtime.pid_files import record_pid, stop_leftover
from tests.support.system import dead_process_id


def is_sleep(argv: list[str]) -> bool:
    return Path(argv[0]).name == "sleep"


def test_a_leftover_of_a_dead_owner_is_stopped_and_its_pid_file_removed(tmp_path, started):
    sleeper = subprocess.Popen(["sleep", "300"])
    started.append(sleeper)
    pid_file = tmp_path / "sleep.pid"
    record_pid(pid_file, sleeper.pid, owner=dead_process_id())
    stopped = stop_leftover(pid_file, is_sleep, what="sleep", error=ClamdStartError,
                            grace_seconds=10)
    assert stopped is not None and stopped.pid == sleeper.pid
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    assert not pid_file.exists()


def test_a_leftover_that_ignores_sigterm_is_killed_after_the_grace(tmp_path, started):
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; exec sleep 300"],
                                stdout=subprocess.PIPE)
    started.append(stubborn)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    pid_file = tmp_path / "sleep.pid"
    record_pid(pid_file, stubborn.pid, owner=dead_process_id())
    stop_leftover(pid_file, is_sleep, what="sleep", error=ClamdStartError, grace_seconds=1)
    assert stubborn.wait(timeout=10) == -signal.SIGKILL


def test_a_pid_now_used_by_another_program_is_left_alone(tmp_path, started):
    other = subprocess.Popen(["sleep", "300"])
    started.append(other)
    pid_file = tmp_path / "clamd.pid"
    record_pid(pid_file, other.pid, owner=dead_process_id())
    assert stop_leftover(pid_file, is_clamd, what="clamd", error=ClamdStartError,
                         grace_seconds=1) is None
    assert other.poll() is None
    assert not pid_file.exists()


def test_a_reused_pid_is_told_apart_by_its_start_time(tmp_path, started):
    sleeper = subprocess.Popen(["sleep", "300"])
    started.append(sleeper)
    pid_file = tmp_path / "sleep.pid"
    record_pid(pid_file, sleeper.pid, owner=dead_process_id())
    record = json.loads(pid_file.read_text())
    record["start"] -= 1  # what a pid file of an earlier process with the same pid holds
    pid_file.write_text(json.dumps(record))
    assert stop_leftover(pid_file, is_sleep, what="sleep", error=ClamdStartError,
                         grace_seconds=1) is None
    assert sleeper.poll() is None


def test_a_child_whose_owner_still_runs_is_refused_naming_both(tmp_path, started):
    sleeper = subprocess.Popen(["sleep", "300"])
    started.append(sleeper)
    pid_file = tmp_path / "sleep.pid"
    record_pid(pid_file, sleeper.pid)  # owned by this (running) process
    with pytest.raises(ClamdStartError) as refused:
        stop_leftover(pid_file, is_sleep, what="sleep", error=ClamdStartError, grace_seconds=1)
    message = str(refused.value)
    assert f"pid {sleeper.pid}" in message and f"pid {os.getpid()}" in message
    assert "\n" not in message
    assert sleeper.poll() is None


def test_no_pid_file_or_a_garbled_one_is_no_leftover(tmp_path):
    pid_file = tmp_path / "clamd.pid"
    assert stop_leftover(pid_file, is_clamd, what="clamd", error=ClamdStartError,
                         grace_seconds=1) is None
    pid_file.write_text("not a pid file")
    assert stop_leftover(pid_file, is_clamd, what="clamd", error=ClamdStartError,
                         grace_seconds=1) is None
