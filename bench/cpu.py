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
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent on anything but idling and waiting for
    I/O since boot, everyone's work included (the first line of /proc/stat)."""
    fields = [int(value) for value in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    # guest and guest_nice (fields 9 and 10) are counted in user and nice already.
    return (sum(fields[:8]) - idle - iowait) / CLOCK_TICKS


OTHERS = "others"
BENCH = "bench"
BENCH_CHILDREN = "clients"


@dataclass(frozen=True)
class CpuReading:
    """What each part had spent at one moment, and the machine as a whole."""

    at: float
    parts: dict[str, float]
    machine: float


class CpuSplit:
    """Where the machine's CPU goes during a workload: each named part's process trees (a
    process counted in the innermost part whose tree holds it, so ``ssftp up`` and the Prefect
    server it started are apart), this process (``bench``: its polling) and its reaped
    children (``clients``: ``sftp`` and ``ssh``), and ``others``, the rest of the machine:
    other people's work on a shared host shows there."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self.parts = parts

    def read(self) -> CpuReading:
        trees = {name: {pid for root in roots for pid in process_tree(root)}
                 for name, roots in self.parts.items()}
        owner: dict[int, str] = {}
        for name, pids in sorted(trees.items(), key=lambda item: -len(item[1])):
            owner.update(dict.fromkeys(pids, name))
        spent = dict.fromkeys(self.parts, 0.0)
        for pid, name in owner.items():
            spent[name] += (_ticks(pid) or 0) / CLOCK_TICKS
        times = os.times()
        spent[BENCH] = times.user + times.system
        spent[BENCH_CHILDREN] = times.children_user + times.children_system
        return CpuReading(time.perf_counter(), spent, _machine_busy_seconds())

    def cores_since(self, before: CpuReading) -> dict[str, float]:
        """Cores each part kept busy on average since ``before`` (CPU seconds per second),
        ``others`` for the rest of the machine's busy time."""
        after = self.read()
        wall = max(after.at - before.at, 1e-6)
        cores = {name: max(0.0, spent - before.parts.get(name, 0.0)) / wall
                 for name, spent in after.parts.items()}
        cores[OTHERS] = max(0.0, (after.machine - before.machine) / wall - sum(cores.values()))
        return cores


# A machine whose cores are this busy is CPU-bound; a process this busy has its one core
# (ssftp's and Prefect's event loops under Python's GIL; clamd's CONTSCAN): more is not
# possible for it on its own.
SATURATED = 0.85


def bound(cores: dict[str, float], cpus: int) -> str:
    """What held a workload back, from the cores each part kept busy: every core (and who
    took most), one part's single core (not ``others`` or ``clients``, which are many
    processes), or no CPU at all (it waited: on the disk, a lock, a timer, a poll)."""
    busy = sum(cores.values())
    top = max(cores, key=lambda name: cores[name])
    if busy >= SATURATED * cpus:
        return f"all {cpus} cores ({busy:.2f} busy); most: {top} {cores[top]:.2f}"
    ours = {name: used for name, used in cores.items() if name not in (OTHERS, BENCH_CHILDREN)}
    one = max(ours, key=lambda name: ours[name], default=None)
    if one is not None and ours[one] >= SATURATED:
        return f"one core: {one} {ours[one]:.2f}"
    return f"not CPU ({busy:.2f} of {cpus} cores busy): waits"


def median_cores(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each part's median over the rounds (0 in a round it had no share in)."""
    names = {name for cores in rounds for name in cores}
    return {name: statistics.median(cores.get(name, 0.0) for cores in rounds)
            for name in sorted(names)} if rounds else {}
