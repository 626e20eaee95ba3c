"""server.heap: the heap's free pages go back to the system after a big transfer, those
the sessions' threads freed too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# In a process of its own: how much of its heap this one holds, and where glibc's mmap
# threshold stands, depend on every test before (run alone it passed, in the tier it failed).
MEASURE = """
import os
from pathlib import Path
from server.heap import give_back_memory

def rss_anon_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

kept, freed = [], []
for _ in range(1024):
    freed.append(os.urandom(64 * 1024))
    kept.append(os.urandom(1024))
del freed
holding = rss_anon_kib()
give_back_memory()
print(holding - rss_anon_kib(), len(kept))
"""


def test_freed_heap_memory_goes_back_to_the_system():
    """Buffers under glibc's mmap threshold come from the heap, which keeps them when freed
    (64 MiB of 64 KiB buffers, interleaved with 1 KiB objects kept, so that nothing shrinks
    the heap from its top by itself); after give_back_memory most of it is the system's."""
    result = subprocess.run([sys.executable, "-c", MEASURE], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True)
    returned_kib, kept = map(int, result.stdout.split())
    assert kept == 1024
    assert returned_kib >= 32 * 1024, f"only {returned_kib} KiB of the 64 MiB went back"


# Eight threads (eight sessions downloading) each hold two 2 MiB blocks (read-ahead blocks) at
# once, then free them; a 4 MiB buffer freed first raises glibc's mmap threshold above them, as
# an asyncssh get's 4 MiB READ replies do, so (without shape_heap) they come from the threads'
# arenas.
THREADS = """
import os
import threading
from pathlib import Path
from server.heap import give_back_memory, shape_heap

def rss_anon_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

shape_heap()
raised = os.urandom(4 << 20)
del raised
before = rss_anon_kib()
together = threading.Barrier(8)

def download():
    together.wait()
    blocks = [os.urandom(2 << 20) for _ in range(2)]
    together.wait()
    del blocks

threads = [threading.Thread(target=download) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
give_back_memory()
print(rss_anon_kib() - before)
"""


def test_memory_the_threads_freed_goes_back_to_the_system():
    """What eight threads allocated and freed goes back with give_back_memory once
    shape_heap ran: each thread in an arena of its own kept 4 MiB resident (32 MiB kept)."""
    result = subprocess.run([sys.executable, "-c", THREADS], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True)
    kept_kib = int(result.stdout)
    assert kept_kib < 8 * 1024, f"{kept_kib} KiB of the threads' 32 MiB stayed resident"
