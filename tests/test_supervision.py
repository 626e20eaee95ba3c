"""clamd supervision and children that die with their parent (issue 13, items 2 and 4).

The plain parts first (fast, real processes and sockets): the restart backoff, how an exit is
described, the pid files and what a start does with a killed predecessor's leftovers, the
stale socket check, and a child that outlives the thread that started it but not its process.

Then one real ``ssftp up`` for the module, in this order: its clamd is SIGKILLed (it is
restarted and scanning goes on), then ``up`` itself is SIGKILLed (nothing of it stays), then a
new ``up`` starts on the same data root beside a clamd and a Prefect server left running with
their pid files (it stops them, comes up and scans).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.errors import ClamdStartError
from ssftp.layout import DataLayout
from ssftp.logs import APP
from ssftp.procfs import ProcessId
from ssftp.runtime.children import CONSOLE_LINES, describe_exit, spawn_with_console
from ssftp.runtime.clamd_daemon import (
    TEST_SIGNATURES,
    ClamdDaemon,
    RestartBackoff,
    clamd_argv,
    clear_stale_socket,
    is_clamd,
    render_config,
    socket_in,
    supervise,
)
from ssftp.runtime.pid_files import record_pid, stop_leftover
from ssftp.runtime.prefect_server import is_healthy, is_prefect_server
from ssftp.scan.clamd import ClamdClient
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support import app_log_records, write_config
from tests.test_cli_pipeline import (
    ACCOUNT_DIR,
    PARTNER,
    PARTNER_PW,
    Up,
    child_env,
    descendants,
    is_alive,
    launch_up,
    shut_down,
    up_config,
    wait_for,
    wait_until_up,
)

REPO = Path(__file__).resolve().parents[1]

# --- the restart backoff and exit descriptions -------------------------------------------------


def test_restart_backoff_doubles_up_to_its_limit():
    backoff = RestartBackoff(first_seconds=1, longest_seconds=60, stable_after_seconds=300)
    delays = [backoff.next_delay(ran_seconds=2) for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_restart_backoff_starts_over_after_a_clamd_ran_a_while():
    backoff = RestartBackoff(first_seconds=1, longest_seconds=60, stable_after_seconds=300)
    for _ in range(5):
        backoff.next_delay(ran_seconds=2)
    assert backoff.next_delay(ran_seconds=301) == 1
    assert backoff.next_delay(ran_seconds=2) == 2


def test_an_exit_is_described_by_its_signal_name_or_status():
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(1) == "exit status 1"
    assert describe_exit(0) == "exit status 0"


# --- pid files and a predecessor's leftovers ---------------------------------------------------


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts by hand; killed at the end whatever happened."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def dead_owner() -> ProcessId:
    """The identity of a process that has exited (a killed ``ssftp up``)."""
    process = subprocess.Popen(["true"])
    owner = ProcessId.of(process.pid)
    process.wait()
    assert owner is not None
    return owner


def is_sleep(argv: list[str]) -> bool:
    return Path(argv[0]).name == "sleep"


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it runs no more)."""
    identity = ProcessId.of(pid)
    return identity is None or not identity.running


def test_a_leftover_of_a_dead_owner_is_stopped_and_its_pid_file_removed(tmp_path, started):
    sleeper = subprocess.Popen(["sleep", "300"])
    started.append(sleeper)
    pid_file = tmp_path / "sleep.pid"
    record_pid(pid_file, sleeper.pid, owner=dead_owner())
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
    record_pid(pid_file, stubborn.pid, owner=dead_owner())
    stop_leftover(pid_file, is_sleep, what="sleep", error=ClamdStartError, grace_seconds=1)
    assert stubborn.wait(timeout=10) == -signal.SIGKILL


def test_a_pid_now_used_by_another_program_is_left_alone(tmp_path, started):
    other = subprocess.Popen(["sleep", "300"])
    started.append(other)
    pid_file = tmp_path / "clamd.pid"
    record_pid(pid_file, other.pid, owner=dead_owner())
    assert stop_leftover(pid_file, is_clamd, what="clamd", error=ClamdStartError,
                         grace_seconds=1) is None
    assert other.poll() is None
    assert not pid_file.exists()


def test_a_reused_pid_is_told_apart_by_its_start_time(tmp_path, started):
    sleeper = subprocess.Popen(["sleep", "300"])
    started.append(sleeper)
    pid_file = tmp_path / "sleep.pid"
    record_pid(pid_file, sleeper.pid, owner=dead_owner())
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


def test_is_prefect_server_knows_the_server_by_its_command_line():
    python, script = "/venv/bin/python", "/venv/bin/prefect"
    assert is_prefect_server([python, script, "server", "start", "--port", "4200"])
    assert not is_prefect_server([python, script, "worker", "start"])
    assert not is_prefect_server([python, "/venv/bin/ssftp", "server", "start"])


# --- stale sockets -------------------------------------------------------------------------


def test_a_socket_nobody_answers_on_is_removed(tmp_path):
    path = tmp_path / "clamd.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a SIGKILLed clamd leaves
    clear_stale_socket(path)
    assert not path.exists()
    clear_stale_socket(path)  # nothing there: nothing to do


def test_a_socket_something_answers_on_is_kept_and_named(tmp_path):
    path = tmp_path / "clamd.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ClamdStartError, match=f"{path}.*already answers") as refused:
            clear_stale_socket(path)
    assert "\n" not in str(refused.value)
    assert path.exists()


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


CHATTY = """
for number in range(200_000):
    print("line", number, flush=number % 1000 == 0)
"""


def test_a_console_keeps_its_last_lines_only_in_memory(tmp_path):
    """A child that prints 2.6 MB: its last lines are kept, nothing else, and no file is
    written (a console file would grow for as long as the child runs)."""
    process, console = spawn_with_console([sys.executable, "-c", CHATTY])
    assert process.wait(timeout=60) == 0
    kept = console.last(10 * CONSOLE_LINES, settle_seconds=30)
    assert kept == [f"line {number}" for number in range(200_000 - CONSOLE_LINES, 200_000)]
    assert console.last(3) == ["line 199997", "line 199998", "line 199999"]
    assert list(tmp_path.iterdir()) == []


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


# --- a child dies with its process, not with the thread that started it ----------------------


PARENT = """
import subprocess, sys, threading, time
from ssftp.runtime.children import spawn_child
thread = threading.Thread(target=lambda: print(
    spawn_child(["sleep", "300"], output=subprocess.DEVNULL).pid, flush=True))
thread.start()
thread.join()
print("thread gone", flush=True)
time.sleep(300)
"""


def test_a_child_outlives_the_thread_that_started_it_and_dies_with_its_process():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE)
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline() == b"thread gone\n"
        time.sleep(0.5)  # a signal on the thread's exit would have arrived by now
        assert not gone(child), "the child died with the thread that started it"
        parent.kill()
        parent.wait()
        wait_for("the child gone after its parent was SIGKILLed", lambda: gone(child),
                 timeout=15)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if child is not None and not gone(child):
            os.kill(child, signal.SIGKILL)


# --- a real ssftp up: clamd killed, up killed, a new up beside a leftover clamd ---------------


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("supervised")
    config = write_config(root / "ssftp.yaml", up_config())
    instance = launch_up(root, config, root / "data", free_port(), free_port())
    try:
        wait_until_up(instance)
        yield instance
    finally:
        shut_down(instance)


def clamd_children(instance: Up) -> list[int]:
    return [proc.pid for proc in descendants(instance.proc.pid)
            if Path(proc.cmdline.split(" ")[0]).name == "clamd"]


def upload_and_wait_clean(instance: Up, client: Path, name: str) -> None:
    (client / name).write_bytes(b"scanned after a fault: " + name.encode() + b"\n")
    put = run_sftp(instance.sftp_port, PARTNER, [f"put {name}"], cwd=client,
                   password=PARTNER_PW, timeout=120)
    assert put.returncode == 0, put.stdout + put.stderr
    target = instance.data / "clean" / ACCOUNT_DIR / name
    wait_for(f"{name} scanned clean", target.is_file, timeout=120, details=instance.tail)


def app_log(instance: Up) -> list[dict[str, object]]:
    log = instance.data / "log" / "ssftp.log"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_a_killed_clamd_is_restarted_and_scanning_goes_on(up, tmp_path):
    (first,) = clamd_children(up)
    os.kill(first, signal.SIGKILL)
    upload_and_wait_clean(up, tmp_path, "after-clamd-died.txt")
    (second,) = clamd_children(up)
    assert second != first
    died = [record for record in app_log(up) if record.get("event") == "clamd died"]
    assert died, up.tail()
    assert "SIGKILL" in str(died[0]["exit"])
    assert "Self checking every" in str(died[0]["log_tail"])  # the end of clamd's own log
    assert json.loads(DataLayout.at(up.data).clamd_pid_file.read_text())["pid"] == second


def test_a_killed_up_takes_its_clamd_and_prefect_server_with_it(up):
    children = descendants(up.proc.pid)
    assert any("prefect" in proc.cmdline for proc in children), children
    assert any("clamd" in proc.cmdline for proc in children), children
    up.proc.kill()
    up.proc.wait(timeout=30)
    wait_for("no process of the killed ssftp up left",
             lambda: not [proc for proc in children if is_alive(proc)], timeout=15,
             details=lambda: "\n".join(f"{p.pid}: {p.cmdline}" for p in children
                                       if is_alive(p)))


def plant_clamd(layout: DataLayout) -> subprocess.Popen[bytes]:
    """A clamd as a killed ``up`` leaves it: running on the data root's socket and log, with
    its pid file, its owner gone."""
    conf = render_config(layout.clamd, TEST_SIGNATURES, 10 * 1024 * 1024, None)
    socket_in(layout.clamd).unlink(missing_ok=True)
    clamd = subprocess.Popen(clamd_argv(conf), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("the planted clamd answering",
             lambda: clamd.poll() is None and socket_in(layout.clamd).exists()
             and _pings(socket_in(layout.clamd)), timeout=60)
    record_pid(layout.clamd_pid_file, clamd.pid, owner=dead_owner())
    return clamd


def _pings(path: Path) -> bool:
    return ClamdClient(ClamdAddress(unix_path=str(path)), timeout=5).ping()


def plant_prefect_server(layout: DataLayout, port: int) -> subprocess.Popen[bytes]:
    """A Prefect server as a killed ``up`` leaves it: answering on the port, with its pid
    file, its owner gone (a next start would otherwise adopt a server that is going away)."""
    prefect = Path(sys.executable).with_name("prefect")
    env = {**child_env(), "PREFECT_HOME": str(layout.system / "prefect")}
    server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--analytics-off"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_for("the planted Prefect server answering",
             lambda: server.poll() is None and is_healthy(f"http://127.0.0.1:{port}/api"),
             timeout=120)
    record_pid(layout.prefect_pid_file, server.pid, owner=dead_owner())
    return server


def test_a_new_up_stops_what_a_killed_one_left_and_scans(up, tmp_path):
    assert up.proc.poll() is not None, "the previous test kills ssftp up"
    layout = DataLayout.at(up.data)
    prefect_port = free_port()
    leftovers = [plant_clamd(layout), plant_prefect_server(layout, prefect_port)]
    again = launch_up(up.root, up.root / "ssftp.yaml", up.data, free_port(), prefect_port)
    try:
        wait_until_up(again)
        for leftover in leftovers:
            assert leftover.wait(timeout=30) is not None
        events = {str(record.get("event")): record.get("pid") for record in app_log(again)}
        assert events.get("stopped the clamd a killed ssftp left running") == leftovers[0].pid
        assert events.get("stopped the Prefect server a killed ssftp left running") == \
            leftovers[1].pid
        # The new up runs a server of its own on the port, not the one it stopped.
        assert [proc for proc in descendants(again.proc.pid) if "prefect" in proc.cmdline]
        upload_and_wait_clean(again, tmp_path, "after-restart.txt")
    finally:
        for leftover in leftovers:
            with contextlib.suppress(ProcessLookupError):
                leftover.kill()
            leftover.wait()
        shut_down(again)
