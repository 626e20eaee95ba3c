"""A map whose entries last a while, at most ``limit`` of them (the oldest go first), shared by
threads: what a process remembers of the last moments (server.recent_uploads,
ssftp.published)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    def __init__(self, seconds: float, limit: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()  # by expiry

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key`` for ``seconds`` from now (a key put again starts over)."""
        with self._lock:
            self._forget_expired()
            self._entries.pop(key, None)
            self._entries[key] = (self._clock() + self._seconds, value)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)

    def get(self, key: K) -> V | None:
        with self._lock:
            self._forget_expired()
            entry = self._entries.get(key)
            return None if entry is None else entry[1]

    def _forget_expired(self) -> None:
        """Take out those past their time (the oldest come first); call with the lock held."""
        now = self._clock()
        while self._entries and next(iter(self._entries.values()))[0] <= now:
            self._entries.popitem(last=False)
