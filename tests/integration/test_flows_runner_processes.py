"""A flow run process that ssftp's Prefect runner started (``python -m prefect.engine``) dies
with the ssftp process that started it, even a SIGKILLed one (flows/__init__.py): seen
failing as a ``prefect.engine`` left running 15 s after its ``ssftp up`` was killed, its
signature update still trying to reach the Prefect server that died with ``up``.

The runner is played by a small parent process that sets ``SSFTP_RUNNER_PARENT`` as the runner's
process does and starts a child that imports :mod:`flows` under the engine's name; a real
runner and engine are in tests/e2e/test_supervision.py, where whether a run is in flight at
the kill is up to timing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.support.repo import REPO
from tests.support.up import descendants, is_alive
from tests.support.waiting import wait_for

CHILD = ("import sys, time; sys.argv[0] = '/lib/python3/prefect/engine.py'; import flows; "
         "print('ready', flush=True); time.sleep(120)")
PARENT = textwrap.dedent(f"""
    import os, subprocess, sys, time
    from flows import RUNNER_PARENT
    env = dict(os.environ, **{{RUNNER_PARENT: str(os.getpid())}})
    child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], env=env,
                             stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
    print(child.pid, flush=True)
    time.sleep(120)
""")


def _start(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_the_run_process_dies_with_a_killed_runner_process() -> None:
    parent = _start(PARENT)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        child = next(proc for proc in descendants(parent.pid) if proc.pid == child_pid)
        parent.kill()
        parent.wait(timeout=30)
        wait_for("the run process to die with its runner", lambda: not is_alive(child),
                 timeout=30)
    finally:
        parent.kill()



def test_a_run_process_of_another_parent_lives_on() -> None:
    """The variable is inherited further (a ``prefect worker`` started from a process that
    ran a runner, as the tests start one): the flow runs of that worker must not take it for
    theirs (seen failing: such a run SIGTERMed itself at once, Crashed)."""
    stale = _start("import os; os.environ['SSFTP_RUNNER_PARENT'] = '1'; " + CHILD)
    try:
        assert stale.stdout is not None and stale.stdout.readline() == "ready\n"
        assert stale.poll() is None
    finally:
        stale.kill()
        stale.wait(timeout=30)
