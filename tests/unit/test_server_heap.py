"""server.heap: the heap's free pages go back to the system after a big transfer."""

from __future__ import annotations

import os
from pathlib import Path

from server.heap import give_back_memory


def rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def test_freed_heap_memory_goes_back_to_the_system():
    """Buffers under glibc's mmap threshold come from the heap, which keeps them when freed
    (here 64 MiB of 64 KiB buffers, interleaved with 1 KiB objects kept, so that nothing shrinks
    the heap from its top by itself); after give_back_memory most of it is the system's."""
    kept, freed = [], []
    for _ in range(1024):
        freed.append(os.urandom(64 * 1024))
        kept.append(os.urandom(1024))  # over pymalloc's 512 bytes: from the heap too
    del freed
    holding = rss_anon_kib()
    give_back_memory()
    assert holding - rss_anon_kib() >= 32 * 1024, "not even half of the 64 MiB went back"
    assert len(kept) == 1024
