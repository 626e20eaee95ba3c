"""Pid files: which daemon a start must stop.

What a SIGKILLed predecessor left running although its children were to die with it (a signal
ignored, a daemon still shutting down when the next start comes) is found through the pid file
it wrote: the next start stops it, unless the process that started it still runs (another
instance on the same data root, whose daemon it must not pull away).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from ssftp.errors import SsftpError
from ssftp.moves import write_durably
from ssftp.procfs import ProcessId


def record_pid(pid_file: Path, pid: int, *, owner: ProcessId | None = None) -> None:
    """Write which child ``pid`` is and which process started it (default: this one)."""
    child = ProcessId.of(pid)
    parent = owner or ProcessId.of(os.getpid())
    if child is None or parent is None:
        return  # gone already: nothing a later start would have to stop
    record = {"pid": child.pid, "start": child.start,
              "owner": parent.pid, "ownerStart": parent.start}
    write_durably(pid_file, json.dumps(record).encode() + b"\n", replace=True, mode=0o600)


def _read_pid_file(pid_file: Path) -> tuple[ProcessId, ProcessId] | None:
    """(child, owner) from a pid file; None when there is none or it is not ours."""
    try:
        record = json.loads(pid_file.read_text())
        return (ProcessId(int(record["pid"]), int(record["start"])),
                ProcessId(int(record["owner"]), int(record["ownerStart"])))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def stop_leftover(pid_file: Path, is_program: Callable[[list[str]], bool], *, what: str,
                  error: type[SsftpError], grace_seconds: float) -> ProcessId | None:
    """Stop the ``what`` that ``pid_file`` records, if it still runs, is really that program
    (``is_program`` of its command line) and the process that started it is gone: what a
    SIGKILLed predecessor left. Returns it, or None when there was nothing to stop.

    A recorded child whose owner still runs belongs to a live instance on the same data root:
    ``error``, naming both, rather than pull its daemon from under it.
    """
    recorded = _read_pid_file(pid_file)
    if recorded is None or not recorded[0].running or not is_program(recorded[0].argv()):
        pid_file.unlink(missing_ok=True)
        return None
    child, owner = recorded
    if owner.running:
        raise error(f"{what} (pid {child.pid}, {pid_file}) belongs to a running ssftp "
                    f"(pid {owner.pid}) on this data root: stop that one first")
    _terminate(child, grace_seconds)
    pid_file.unlink(missing_ok=True)
    return child


def _terminate(process: ProcessId, grace_seconds: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_seconds``, of a process that is not our child (so
    it cannot be waited for: its end is watched in /proc)."""
    for sig, wait_seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 30.0)):
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_seconds
        while process.running and time.monotonic() < deadline:
            time.sleep(0.1)
        if not process.running:
            return
