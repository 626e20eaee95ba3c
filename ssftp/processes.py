"""A process's life: running until SIGINT or SIGTERM, and the daemons it starts (clamd, the
Prefect server): started so that they die with it, recorded in pid files, stopped politely,
then firmly.

Children die with their parent even when it is SIGKILLed (the OOM killer, ``kill -9``), where
no ``finally`` runs: each child asks the kernel, before it becomes the daemon, for SIGTERM when
its parent goes (``prctl(PR_SET_PDEATHSIG)``, in a tiny Python wrapper that then ``exec``\\ s
the daemon; not in a ``preexec_fn``, which is unsafe in a process with threads). The kernel
sends that signal when the *thread* that forked the child exits, not the process: so every
child is forked by one spawner thread that lives as long as the process, whichever thread asks
(``ssftp up`` starts its daemons from worker threads, which come and go).

What a SIGKILLed predecessor left running anyway (a signal ignored, a daemon still shutting
down when the next start comes) is found through its pid file: the next start stops it.

A stop is bounded (:class:`StopDeadline`): past it, the process says what was still running
and exits, rather than hang in a flush or an exit handler that waits for a server gone.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from ssftp.errors import SsftpError
from ssftp.moves import write_durably

PR_SET_PDEATHSIG = 1
# Runs in the child, between fork and the daemon: argv is [parent pid, program, args...].
DIE_WITH_PARENT = f"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_PDEATHSIG}, ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0),
              ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
    sys.exit("prctl(PR_SET_PDEATHSIG): " + os.strerror(ctypes.get_errno()))
if os.getppid() != int(sys.argv[1]):
    sys.exit("the parent died before the child started")
os.execvp(sys.argv[2], sys.argv[2:])
"""

ChildOutput = IO[bytes] | int


# How long a whole stop may take, from SIGINT/SIGTERM to the end of the process.
STOP_SECONDS = 15.0
# The exit status of a stop that its deadline ended.
FORCED_EXIT_STATUS = 2


class StopDeadline:
    """The bound of a stop: :meth:`arm` when the stop begins, :meth:`step` as it goes. Once
    ``seconds`` have passed (a flush stuck on a dead server, a thread that never ends, an exit
    handler of a library waiting for either) one line on stderr names the step under way and
    the threads that still run, and the process ends with ``os._exit``: its children get their
    SIGTERM from the kernel (``spawn_child``). The line is written with ``os.write``: the
    logging handlers' locks may be held by the very thread that hangs."""

    def __init__(self, seconds: float = STOP_SECONDS) -> None:
        self.seconds = seconds
        self._step = "stopping"
        self._timer = threading.Timer(seconds, self._force)
        self._timer.daemon = True  # the timer itself never keeps the process alive

    def arm(self, step: str) -> None:
        self._step = step
        self._timer.start()

    def step(self, step: str) -> None:
        self._step = step

    def _force(self) -> None:
        running = sorted(thread.name for thread in threading.enumerate()
                         if not thread.daemon and thread is not threading.main_thread())
        line = (f"ssftp: the stop took more than {self.seconds:.0f} s, forced exit while "
                f"{self._step} (threads still running: {', '.join(running) or 'main only'})\n")
        os.write(2, line.encode(errors="replace"))
        os._exit(FORCED_EXIT_STATUS)


async def run_until_stopped() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def spawn_child(argv: list[str], *, output: ChildOutput,
                env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child that gets SIGTERM when this process dies, in a session of its
    own (a Ctrl-C to the terminal's group reaches only its parent, which stops it in order),
    stdout and stderr to ``output``. Its pid is the daemon's: the wrapper ``exec``\\ s it."""
    wrapped = [sys.executable, "-I", "-S", "-c", DIE_WITH_PARENT, str(os.getpid()), *argv]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(wrapped, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                stderr=output, start_new_session=True)

    return _on_spawner_thread(start)


# A console keeps this many of its last lines, each cut at this many bytes.
CONSOLE_LINES = 50
CONSOLE_LINE_BYTES = 4096


class ConsoleTail:
    """The last lines a child printed on stdout and stderr, read from a pipe by a thread of
    its own until the child exits: what says why it failed to start or why it died, without a
    file that grows as long as it runs (a clamd in the foreground echoes every log line)."""

    def __init__(self, pipe: BinaryIO, lines: int = CONSOLE_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._reader = threading.Thread(target=self._read, args=(pipe,), name="child-console",
                                        daemon=True)
        self._reader.start()

    def _read(self, pipe: BinaryIO) -> None:
        with pipe:
            for line in iter(lambda: pipe.readline(CONSOLE_LINE_BYTES), b""):
                self._lines.append(line.decode(errors="replace").rstrip("\r\n"))

    def last(self, lines: int, *, settle_seconds: float = 0.0) -> list[str]:
        """The last ``lines`` read; ``settle_seconds``: first wait that long for the rest of
        the output of a child that has exited (the reader may be a line or two behind)."""
        if settle_seconds:
            self._reader.join(timeout=settle_seconds)
        return list(self._lines)[-lines:]


def spawn_with_console(argv: list[str], *,
                       env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes],
                                                                    ConsoleTail]:
    """:func:`spawn_child`, its stdout and stderr kept in a :class:`ConsoleTail`."""
    read_end, write_end = os.pipe()
    try:
        process = spawn_child(argv, output=write_end, env=env)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)  # the child holds its copy: the reader sees EOF when it exits
    return process, ConsoleTail(os.fdopen(read_end, "rb"))


_Request = tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
_requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
_spawner_lock = threading.Lock()
_spawner: list[threading.Thread] = []


def _on_spawner_thread(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run ``start`` on the one thread that forks every child (see the module docstring)."""
    with _spawner_lock:
        if not _spawner:
            thread = threading.Thread(target=_spawn_forever, name="ssftp-spawner", daemon=True)
            thread.start()
            _spawner.append(thread)
    result: Future[subprocess.Popen[bytes]] = Future()
    _requests.put((start, result))
    return result.result()


def _spawn_forever() -> None:
    while True:
        start, result = _requests.get()
        try:
            result.set_result(start())
        except BaseException as exc:  # handed to the caller, which raises it
            result.set_exception(exc)


def stop_child(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM, wait up to ``grace_seconds`` for a clean exit, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` or ``exit status 1``: how a child (``Popen.returncode``) ended."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


# --- pid files: which process a start must stop ----------------------------------------------


@dataclass(frozen=True)
class ProcessId:
    """A process as the kernel tells it apart: its pid and when it started (clock ticks after
    boot), so a pid reused by a later process is never mistaken for the recorded one."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The process ``pid`` now, or None when there is none."""
        stat = _stat(pid)
        return None if stat is None else cls(pid, stat[1])

    @property
    def running(self) -> bool:
        """Still this process, and not a zombie (which runs no more)."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[0] != "Z"

    def argv(self) -> list[str]:
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) from /proc/<pid>/stat, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name in (...) may hold spaces
    return fields[0], int(fields[19])


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
