"""Brute-force defender: an address with too many failed logins is banned for a while.

Failed logins are counted here, in memory, per server process (ssftp.bans says why only bans
are stored). A ban goes to a :class:`~ssftp.bans.BanStore`: for ``ssftp serve`` and ``ssftp up``
the data root's shared one, so a ban made by one server holds on every server of the root, and
``ssftp defender unban`` lifts it on all of them at their next login.

The bans are asked at every login attempt, on the event loop, so they are held here in memory:
:meth:`Defender.is_banned` is a dictionary lookup. The store is looked at once per connection,
when it starts to log in (:meth:`Defender.refresh`): in the defender's own thread (a file on a
hung share must not stop the loop), one SQLite ``PRAGMA data_version`` that says whether
anyone changed the bans, and only then a read of them. A ban made here is in force here at
once and written in that thread after it. While banned, every login attempt from the address
fails, even with the right credentials, and is logged as such.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from server.off_loop import SessionThread
from ssftp.bans import Ban, BanStore, MemoryBans
from ssftp.errors import BanStoreError
from ssftp.logs import APP, audit_event, log_event
from ssftp.metrics import DEFENDER_BANS

logger = logging.getLogger(APP)


def this_server() -> str:
    """How a ban names the server that made it: the host and the process."""
    return f"{socket.gethostname()} pid {os.getpid()}"


@dataclass
class Defender:
    max_failures: int = 10
    window_seconds: float = 300.0
    ban_seconds: float = 900.0
    store: BanStore = field(default_factory=MemoryBans)
    server: str = field(default_factory=this_server)
    clock: Callable[[], float] = time.time  # the wall clock: bans are compared across machines
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _bans: dict[str, Ban] = field(default_factory=dict)
    # Bans made here whose write to the store is not done: a read of the store that started
    # before the write must not drop them.
    _unwritten: dict[str, Ban] = field(default_factory=dict)
    _thread: SessionThread = field(default_factory=SessionThread)
    _refreshing: asyncio.Task[None] | None = None
    _writes: set[asyncio.Task[None]] = field(default_factory=set)
    _store_failing: bool = False

    def is_banned(self, ip: str) -> bool:
        ban = self._bans.get(ip)
        if ban is None:
            return False
        if self.clock() >= ban.until:
            del self._bans[ip]
            return False
        return True

    def record_failure(self, ip: str) -> bool:
        """Count a failed login; True when this failure got the address banned (on the event
        loop: the ban is written to the store in the defender's thread)."""
        now = self.clock()
        failures = self._failures.setdefault(ip, deque())
        failures.append(now)
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if len(failures) < self.max_failures:
            return False
        del self._failures[ip]
        ban = Ban(ip, now, now + self.ban_seconds, len(failures), self.server)
        self._bans[ip] = self._unwritten[ip] = ban
        DEFENDER_BANS.inc()
        log_event(logger, "address banned", logging.WARNING, ip=ip, seconds=self.ban_seconds,
                  failures=ban.failures, server=ban.server)
        task = asyncio.get_running_loop().create_task(self._write(ban))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return True

    def record_success(self, ip: str) -> None:
        self._failures.pop(ip, None)

    async def refresh(self) -> None:
        """Bring the bans held here up to date with the store, if anyone changed it since the
        last look. The logins that ask meanwhile share one look, and a login that goes away
        does not cancel it for the others."""
        if self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        try:
            bans = await self._thread.run(functools.partial(self._read_if_changed, self.clock()))
        except BanStoreError as exc:
            if not self._store_failing:  # once, not at every login while it lasts
                log_event(logger, "ban store unavailable", logging.WARNING, error=str(exc))
            self._store_failing = True
            return
        finally:
            self._refreshing = None
        if self._store_failing:
            log_event(logger, "ban store available again")
            self._store_failing = False
        if bans is not None:
            self._bans = {ban.address: ban for ban in bans} | self._unwritten

    def _read_if_changed(self, now: float) -> list[Ban] | None:
        """In the defender's thread: the bans in force, or None when nothing changed."""
        return self.store.live(now) if self.store.changed() else None

    async def _write(self, ban: Ban) -> None:
        try:
            await self._thread.run(functools.partial(self._store_ban, ban))
        except BanStoreError as exc:
            log_event(logger, "ban not shared", logging.WARNING, ip=ban.address,
                      error=str(exc))
        finally:
            if self._unwritten.get(ban.address) is ban:
                del self._unwritten[ban.address]

    def _store_ban(self, ban: Ban) -> None:
        """In the defender's thread: the store and the audit log are files."""
        self.store.add(ban)
        audit_event("ban", logging.WARNING, **ban.as_dict())

    async def close(self) -> None:
        """Close the store after the writes queued, without waiting for them (a hung share
        must not keep the server from stopping)."""
        await self._thread.start(self.store.close)
        self._thread.shutdown()
