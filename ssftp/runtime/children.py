"""The daemons a process starts (clamd, the Prefect server): started so that they die with
it, their console kept, stopped politely, then firmly.

Children die with their parent even when it is SIGKILLed (the OOM killer, ``kill -9``), where
no ``finally`` runs: each child asks the kernel, before it becomes the daemon, for SIGTERM when
its parent goes (``prctl(PR_SET_PDEATHSIG)``, in a tiny Python wrapper that then ``exec``\\ s
the daemon; not in a ``preexec_fn``, which is unsafe in a process with threads). The kernel
sends that signal when the *thread* that forked the child exits, not the process: so every
child is forked by one spawner thread that lives as long as the process, whichever thread asks
(``ssftp up`` starts its daemons from worker threads, which come and go).
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, BinaryIO

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
# How long to wait for the last console lines of a child that has exited.
CONSOLE_SETTLE_SECONDS = 2.0


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
