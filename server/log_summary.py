"""Log lines that a client can repeat at will, in summary: a flood writes a few lines, not one
per request.

Per key (what was refused and why: a limit and an address for the refused connections of a
listener; an operation and a reason for the refused requests of one connection), the first
line is logged at once. Those that follow within the interval are counted, and when it ends
one line says how many (``suppressed``, with the fields of the latest) and starts the next
interval; an interval without any ends the key, so what is kept is only the keys seen in the
last interval. A connection's summary is flushed when it ends: the count pending is logged
then, not lost.

A client that varies its reasons (a command name is part of one) cannot make every line a
first one: a connection's summary keeps :data:`MAX_KEYS` keys at once, the rest of an event
share one key. (A listener's keeps every address: each is worth its line.)

On the event loop only (its timers are the loop's); a session's thread hands its lines over
with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from ssftp.logs import APP, log_event

logger = logging.getLogger(APP)

# At most one line per key this often (after the first): per (limit, address) for the connections
# refused at a limit, per (operation, reason) of each connection for its refused requests.
REFUSAL_LOG_SECONDS = 60.0
MAX_KEYS = 16
_OTHERS = "(others)"

Key = tuple[str, ...]


@dataclass
class _Pending:
    level: int
    fields: dict[str, Any]
    timer: asyncio.TimerHandle
    suppressed: int = 0


@dataclass
class LogSummary:
    """The summary of a listener's refused connections or of one connection's refused
    requests (see the module docstring)."""

    interval: float
    max_keys: int | None = None  # None: as many as there are
    _pending: dict[Key, _Pending] = field(default_factory=dict)

    def log(self, key: Key, event: str, level: int, **fields: Any) -> None:
        """Log ``event`` with ``fields``, or count it when ``key`` was logged in this interval."""
        key = (event, *key)
        if (self.max_keys is not None and key not in self._pending
                and len(self._pending) >= self.max_keys):
            key = (event, _OTHERS)
        pending = self._pending.get(key)
        if pending is None:
            self._write(key, level, fields)
        else:
            pending.suppressed += 1
            pending.level, pending.fields = level, fields

    def flush(self) -> None:
        """Log what is counted and end every interval (the connection has ended)."""
        for key in list(self._pending):
            self._pending[key].timer.cancel()
            self._interval_ended(key, again=False)

    def _write(self, key: Key, level: int, fields: dict[str, Any]) -> None:
        log_event(logger, key[0], level, **fields)
        timer = asyncio.get_running_loop().call_later(self.interval, self._interval_ended, key)
        self._pending[key] = _Pending(level, fields, timer)

    def _interval_ended(self, key: Key, again: bool = True) -> None:
        pending = self._pending.pop(key)
        if not pending.suppressed:
            return
        fields = {**pending.fields, "suppressed": pending.suppressed}
        if again:
            self._write(key, pending.level, fields)
        else:
            log_event(logger, key[0], pending.level, **fields)
