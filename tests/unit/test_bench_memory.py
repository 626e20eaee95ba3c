"""bench.memory: the memory of a process tree (testkit.processes), children included: what the
benchmark reports for ssftp and for OpenSSH alike."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.memory import tree_memory
from testkit.processes import process_tree


def test_memory_of_a_process_tree_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        memory = tree_memory(os.getpid())
        assert memory.processes >= 2
        assert memory.rss_bytes > memory.pss_bytes > 0
    finally:
        child.kill()
        child.wait()
