"""Brute-force defender: an address with too many failed logins is banned for a while.

Kept in memory per server process (like SFTPGo's memory defender): a ban slows an attacker
down without shared state, and a restart clears it. While banned, every login attempt from
the address fails, even with the right credentials, and is logged as such.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ssftp.metrics import DEFENDER_BANS


@dataclass
class Defender:
    max_failures: int = 10
    window_seconds: float = 300.0
    ban_seconds: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _banned_until: dict[str, float] = field(default_factory=dict)

    def is_banned(self, ip: str) -> bool:
        until = self._banned_until.get(ip)
        if until is None:
            return False
        if self.clock() >= until:
            del self._banned_until[ip]
            return False
        return True

    def record_failure(self, ip: str) -> bool:
        """Count a failed login; True when this failure got the address banned."""
        now = self.clock()
        failures = self._failures.setdefault(ip, deque())
        failures.append(now)
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if len(failures) >= self.max_failures:
            del self._failures[ip]
            self._banned_until[ip] = now + self.ban_seconds
            DEFENDER_BANS.inc()
            return True
        return False

    def record_success(self, ip: str) -> None:
        self._failures.pop(ip, None)
