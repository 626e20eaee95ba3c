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
:func:`use_one_arena` has every thread allocate from the main arena, so the trim reaches all
freed memory. What it could cost, threads waiting for the arena's lock, hardly happens here:
Python allocates holding the GIL, which lets one thread at a time in already; side by side,
the transfer rates and the server's CPU per file and per GiB stayed within the noise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_AFTER_BYTES = 16 << 20
# glibc's malloc.h: the mallopt parameter for the most arenas a process may have.
M_ARENA_MAX = -8


def _glibc_function(name: str) -> Callable[..., int] | None:
    """A function of glibc's allocator; None where the C library has none (musl)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    function: Callable[..., int] | None = getattr(ctypes.CDLL(library), name, None)
    return function


_TRIM = _glibc_function("malloc_trim")
_MALLOPT = _glibc_function("mallopt")


def use_one_arena() -> None:
    """Have every thread of the process allocate from glibc's main arena (a no-op without
    glibc). Called where a server process starts, before its sessions' threads exist: a thread
    that has allocated keeps the arena it got."""
    if _MALLOPT is not None:
        _MALLOPT(M_ARENA_MAX, 1)


def give_back_memory() -> None:
    """Return the heap's free pages to the system (a no-op without glibc)."""
    if _TRIM is not None:
        _TRIM(0)
