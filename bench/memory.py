"""How much memory a server holds, read from ``/proc`` (Linux only).

ssftp serves every session from one process, OpenSSH forks processes per connection, so the
comparison sums over the server's whole process tree. RSS counts a shared library once per
process that maps it, which would charge sshd many times for the same pages; PSS shares such
pages out, so the sum of PSS is what the tree really costs. Both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testkit.processes import process_tree

PROC = Path("/proc")


@dataclass(frozen=True)
class Memory:
    processes: int
    rss_bytes: int
    pss_bytes: int


def _kib_field(path: Path, name: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"{path} has no {name} line")


def tree_memory(root: int) -> Memory:
    """RSS and PSS summed over ``root``'s process tree (processes that vanish are skipped)."""
    rss = pss = count = 0
    for pid in process_tree(root):
        try:
            one_rss = _kib_field(PROC / str(pid) / "status", "VmRSS")
            one_pss = _kib_field(PROC / str(pid) / "smaps_rollup", "Pss")
        except (OSError, ValueError):
            continue
        rss, pss, count = rss + one_rss, pss + one_pss, count + 1
    return Memory(count, rss, pss)
