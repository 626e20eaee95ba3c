"""After a big transfer, the memory its buffers took goes back to the system.

A transfer's buffers (READ replies of up to 4 MiB, WRITE data held for write-behind) are
allocated and freed by the megabyte. glibc serves the first ones by mmap and returns them at
once, but then raises its mmap threshold to their size, so the next ones come from the heap,
which keeps what is freed: after one 256 MiB get and put, an ``ssftp serve`` with 100 idle
sessions held 85.8 MB instead of 76 MB. :func:`malloc_trim` gives the heap's free pages back
(0.1 ms), so it runs once per transfer of :data:`TRIM_AFTER_BYTES` or more (77.9 MB in the
same run), not per request; fixing the threshold instead would mmap and fault in every big
buffer afresh.

That trim reaches only the main arena's heap in full. glibc gives each new thread an arena of
its own (up to eight per core), and a thread arena gives back the free memory at its top only
once it exceeds the trim threshold, which the same raise lifts to twice the mmap threshold;
``malloc_trim`` does not touch that top. A session's thread reads the blocks of its downloads,
so after an asyncssh ``get`` (4 MiB blocks: the threshold rises above the 2 MiB read-ahead
blocks) eight concurrent downloads left eight arenas of some 4 MiB each resident: in bench/,
100 idle sessions afterwards held 107 MB, 76.5 MB with one arena (in
tests/unit/test_server_heap.py eight threads' 2 MiB blocks keep 32 MiB, none with one arena).
:func:`shape_heap` has every thread allocate from the main arena, so the trim reaches all
freed memory. Threads waiting for the arena's lock hardly happens: Python allocates holding
the GIL, which lets one thread at a time in already. But one arena alone made the asyncssh
get 12% slower (380 vs 431 MB/s, 6 rounds side by side, every round), most likely as its
4 MiB blocks, now all at the top of the one heap, crossed the trim threshold that the dynamic
mmap threshold sets at twice a block, so that the heap shrank and grew again, its pages
faulted in anew, block after block. With the thresholds fixed as well it is gone: buffers up
to 32 MiB (glibc's own ceiling for the dynamic threshold) come from the heap, and its top is
given back by itself only beyond 64 MiB; between transfers, :func:`give_back_memory` gives
it back. Side by side with glibc's defaults (4 rounds each): the asyncssh get 470 vs 358
MB/s, 1000 small puts 752 vs 683 files/s, 256 MiB put and get and CPU per GiB within the
noise, and 100 idle sessions after the workloads 78 vs 120 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_AFTER_BYTES = 16 << 20
# glibc's malloc.h: mallopt's parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
HEAP_UP_TO = 32 << 20
TRIM_BEYOND = 64 << 20


def _glibc_function(name: str) -> Callable[..., int] | None:
    """A function of glibc's allocator; None where the C library has none (musl)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    function: Callable[..., int] | None = getattr(ctypes.CDLL(library), name, None)
    return function


_TRIM = _glibc_function("malloc_trim")
_MALLOPT = _glibc_function("mallopt")


def shape_heap() -> None:
    """Have every thread of the process allocate from glibc's main arena, buffers up to
    :data:`HEAP_UP_TO` from its heap, whose top is trimmed by itself only beyond
    :data:`TRIM_BEYOND` (a no-op without glibc). Called where a server process starts, before
    its sessions' threads exist: a thread that has allocated keeps the arena it got."""
    if _MALLOPT is not None:
        _MALLOPT(M_ARENA_MAX, 1)
        _MALLOPT(M_MMAP_THRESHOLD, HEAP_UP_TO)
        _MALLOPT(M_TRIM_THRESHOLD, TRIM_BEYOND)


def give_back_memory() -> None:
    """Return the heap's free pages to the system (a no-op without glibc)."""
    if _TRIM is not None:
        _TRIM(0)
