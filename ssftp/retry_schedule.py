"""When something that failed is tried again: exponential backoff.

``RetrySchedule`` tracks files that could not be scanned, in memory (after a restart every file
in staging is scanned again anyway); ``backoff_delay`` is its schedule, which the staging
queue's clamd probes, the webhook outbox's redeliveries and clamd's restarts follow too;
``exponential_delays`` gives Prefect's task retries
(webhooks, transfers) their delays.
"""

from __future__ import annotations

import math
from pathlib import Path


def backoff_delay(failures: int, initial_seconds: float, max_seconds: float) -> float:
    """The wait after the ``failures``-th failure in a row: doubling from ``initial_seconds``,
    capped at ``max_seconds``. The exponent is capped too: 2.0 ** 1024 overflows after a long
    enough outage."""
    return min(max_seconds, initial_seconds * 2.0 ** min(failures - 1, 64))


def exponential_delays(first_delay: float, retries: int) -> list[float]:
    """The delay before each retry: ``first_delay``, doubling each time."""
    return [first_delay * 2**attempt for attempt in range(retries)]


class RetrySchedule:
    """Files waiting for their next attempt, by where they are now; their failed attempts by
    the file: its staged path (``origin``), which a file keeps while where it is changes (a
    claim that could not be released is retried from a new claim each time). The same
    failure twice is the same file's second attempt, never a new first one (which would
    raise another ``scanError``)."""

    def __init__(self, initial_seconds: float, max_seconds: float) -> None:
        self.initial_seconds = initial_seconds
        self.max_seconds = max_seconds
        self._attempts: dict[Path, int] = {}
        self._due: dict[Path, float] = {}

    def __len__(self) -> int:
        """Files waiting for their next attempt (held during an outage included)."""
        return len(self._due)

    def failed(self, path: Path, now: float, origin: Path | None = None) -> int:
        """Record a failed attempt of the file staged at ``origin`` (by default ``path``
        itself) and now at ``path``; returns how many attempts of it have failed so far."""
        origin = origin or path
        attempts = self._attempts.get(origin, 0) + 1
        self._attempts[origin] = attempts
        self._due[path] = now + backoff_delay(attempts, self.initial_seconds, self.max_seconds)
        return attempts

    def attempts(self, origin: Path) -> int:
        """How many attempts of the file staged at ``origin`` have failed in a row."""
        return self._attempts.get(origin, 0)

    def succeeded(self, path: Path, origin: Path | None = None) -> None:
        self._attempts.pop(origin or path, None)
        self._due.pop(path, None)

    def waiting(self, path: Path, now: float) -> bool:
        """True while ``path`` failed recently and its next attempt is not due yet."""
        return self._due.get(path, 0.0) > now

    def due(self, now: float) -> list[Path]:
        """Files whose next attempt is due; each is handed out once per failure."""
        due = [path for path, at in self._due.items() if at <= now]
        for path in due:
            del self._due[path]
        return due

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None)

    def hold_all(self) -> None:
        """Every file waiting for a retry waits until :meth:`release_held` instead (clamd is
        down: trying them one by one would only fail again); their attempt counts stay."""
        self._due = dict.fromkeys(self._due, math.inf)

    def release_held(self, now: float) -> int:
        """Make the held files due ``now``; returns how many there were."""
        held = [path for path, at in self._due.items() if at == math.inf]
        self._due.update(dict.fromkeys(held, now))
        return len(held)
