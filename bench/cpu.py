"""CPU a server spends, and CPU taken away from it, read from and done to ``/proc`` (Linux only).

A transfer's cost is the user + system CPU of the server's whole process tree: ssftp serves
every session in its one process, OpenSSH's sshd forks per connection. For sshd 9.2 on Linux a
session is three processes under the listener: the privileged monitor (``sshd: user@notty``),
its pre-auth ``[net]`` child, which exits after the login, and the post-auth
``sshd: user@internal-sftp`` child, which does the SFTP work. When the client leaves they exit;
each parent reaps its child, and reaping adds the child's own CPU and its reaped descendants'
(``cutime``/``cstime``) to the parent's ``cutime``/``cstime``. So the CPU a tree has spent so
far is, over the processes alive now, their own ``utime + stime`` plus their ``cutime + cstime``:
a live process counts through its own fields, a reaped one through its parent's, and a zombie
(exited, not yet reaped) still through its own.

A reading is right only when no process is being reaped while it is taken (the child read
first and the parent read after the reap would count twice). So the reading after a transfer
waits until the tree is back to the processes it had before it: for sshd, until the listener
has reaped the session. Checked on this machine (sshd 9.2, a 256 MiB put to tmpfs, polling the
tree every 20 ms): the session processes' last seen own times came to 0.45 s, the listener's
``cutime + cstime`` after the reap to 0.49 s (the rest is the work after the last look), and it
was 0 before.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from testkit.processes import process_tree

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> int | None:
    """``utime + stime + cutime + cstime`` of ``pid`` (None once it is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # After the command name in parentheses (which may hold spaces), fields 14-17 of stat(5).
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15])


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds ``root``'s process tree has spent so far, its reaped processes included."""
    return sum(_ticks(pid) or 0 for pid in process_tree(root)) / CLOCK_TICKS


class Meter:
    """The CPU one server's tree spends between ``start()`` and ``stop()``."""

    def __init__(self, root: int, settle_timeout: float = 30.0) -> None:
        self.root = root
        self.settle_timeout = settle_timeout
        self._processes: set[int] = set()
        self._started = 0.0

    def start(self) -> None:
        self._processes = set(process_tree(self.root))
        self._started = tree_cpu_seconds(self.root)

    def stop(self) -> float:
        """The CPU seconds since ``start()``, once the processes the work started have ended
        and been reaped (so that none is reaped during the reading)."""
        deadline = time.monotonic() + self.settle_timeout
        while set(process_tree(self.root)) != self._processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the processes under pid {self.root} did not go back to "
                                   f"{sorted(self._processes)} within "
                                   f"{self.settle_timeout:.0f} s")
            time.sleep(0.01)
        return tree_cpu_seconds(self.root) - self._started


@contextlib.contextmanager
def cpu_burners(count: int) -> Iterator[int]:
    """``count`` busy-looping processes for as long as the block runs, so that a workload
    meets a machine whose other cores are taken (the servers and clients share what is left);
    how many there are."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                stdin=subprocess.DEVNULL)
               for _ in range(count)]
    try:
        yield len(burners)
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait()
