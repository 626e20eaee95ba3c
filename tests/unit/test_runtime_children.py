"""ssftp.runtime.children: how an exit is described, a child's console kept in memory, and a
child that outlives the thread that started it but not its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ssftp.procfs import ProcessId
from ssftp.runtime.children import CONSOLE_LINES, describe_exit, spawn_with_console
from tests.support.repo import REPO
from tests.support.waiting import wait_for


def test_an_exit_is_described_by_its_signal_name_or_status():
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(1) == "exit status 1"
    assert describe_exit(0) == "exit status 0"


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it runs no more)."""
    identity = ProcessId.of(pid)
    return identity is None or not identity.running


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
