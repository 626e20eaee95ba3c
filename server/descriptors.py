"""The process's file descriptors, which every session shares: a budget, so that no number of
clients and handles can take the last ones (then accept() and every log write fail, for
everyone).

At start the soft RLIMIT_NOFILE is raised to the hard one (a soft 1024 under a far larger hard
limit is common), and the limit is divided:

- :data:`FIXED_RESERVE` for the process itself: ``ssftp serve`` holds 22 at rest (stdio, the
  three logs, the listener, the event loop's epoll, eventfds and pipes, the config watcher's
  inotify); ``ssftp up`` adds clamd's connection and the file being scanned, Prefect's HTTP
  connections and its server's pipes. On top of that, the most the metrics listener can hold
  (``ssftp.runtime.listener.DESCRIPTORS``: its connections are capped), so that no number of
  connections to it can take the sessions' share.
- A quarter of the rest for connections, :data:`PER_CONNECTION` each: its socket, and one for
  what an operation holds for a moment (the directory a path operation acts through, the
  source of a resumed upload; a rename holds two, and the fixed reserve takes such peaks).
  Connections beyond it are refused ("server is busy").
- The other three quarters for the open files and directories of all sessions together (a
  connection's sessions may hold hundreds); an OPEN or OPENDIR beyond it answers "server is
  busy".

At 20 000 that is 2 488 connections and 14 935 handles; at 256, 20 and 127. The figures are
in the server's ``listening`` log line (:meth:`DescriptorBudget.figures`).

The counts are taken on the event loop (connections, and a session's OPEN and CLOSE, even
when their filesystem work runs elsewhere), and kept behind one lock all the same: a count
moved into a session's thread stays right, for the price of an uncontended lock per OPEN. A
listing is counted while asyncssh holds it, in a weak set (asyncssh tells the server nothing on
its CLOSE); its removal from the set takes no lock, so a listing freed by the cycle collector
in the middle of a count, in whatever thread, cannot deadlock it.
"""

from __future__ import annotations

import functools
import logging
import resource
import threading
import weakref
from dataclasses import dataclass, field

from ssftp.logs import APP, log_event
from ssftp.runtime.listener import DESCRIPTORS as METRICS_DESCRIPTORS

logger = logging.getLogger(APP)

FIXED_RESERVE = 64 + METRICS_DESCRIPTORS
PER_CONNECTION = 2
CONNECTION_SHARE = 4  # a quarter of what the process does not keep for itself


@dataclass
class DescriptorBudget:
    """How many handles (all sessions) and connections the process's descriptors allow, and
    how many are held now."""

    limit: int
    handles: int
    connections: int
    raised_from: int = 0  # the soft limit the process was started with
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _files: int = 0
    _listings: weakref.WeakSet[object] = field(default_factory=weakref.WeakSet)
    _connections: int = 0

    @classmethod
    def for_limit(cls, limit: int, raised_from: int = 0) -> DescriptorBudget:
        usable = max(limit - FIXED_RESERVE, PER_CONNECTION + 1)
        connections = max(usable // CONNECTION_SHARE // PER_CONNECTION, 1)
        return cls(limit, handles=usable - connections * PER_CONNECTION,
                   connections=connections, raised_from=raised_from or limit)

    def figures(self) -> dict[str, int]:
        return {"descriptors": self.limit, "descriptors_at_start": self.raised_from,
                "handle_budget": self.handles, "connection_budget": self.connections}

    def take_handle(self, listing: object | None = None) -> bool:
        """Count a new handle when there is room: an open file (until :meth:`release_file`), or
        a listing (while it exists)."""
        with self._lock:
            if self._files + len(self._listings) >= self.handles:
                return False
            if listing is None:
                self._files += 1
            else:
                self._listings.add(listing)
            return True

    def release_file(self) -> None:
        with self._lock:
            self._files -= 1

    def connection_opened(self) -> bool:
        """Count a connection's socket (it holds a descriptor whether or not it is let in);
        False when it is beyond the connections' share."""
        with self._lock:
            self._connections += 1
            return self._connections <= self.connections

    def connection_closed(self) -> None:
        with self._lock:
            self._connections -= 1


def _raise_soft_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; the soft limit before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= soft:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:  # a sandbox may forbid it: work within the soft one
        log_event(logger, "descriptor limit not raised", logging.WARNING, soft=soft, hard=hard,
                  error=str(exc))
        return soft, soft
    return soft, hard


@functools.cache
def process_budget() -> DescriptorBudget:
    """The one budget of this process, made by the first server started in it."""
    soft, limit = _raise_soft_limit()
    return DescriptorBudget.for_limit(limit, raised_from=soft)
