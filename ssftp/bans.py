"""The defender's bans: which client addresses may not log in, and until when.

One interface, two stores (the shape of SFTPGo's defender: a memory one and a shared one):

- :class:`MemoryBans`, the bans of one process (a gateway started without a data root's store:
  tests, a library caller);
- :class:`SharedBans`, ``system/defender.sqlite3``: every ``ssftp serve`` and ``ssftp up`` on a
  data root reads and writes it, so a ban made by one server holds on all, and ``ssftp defender
  list|unban`` act on it. SQLite in WAL mode with a busy timeout, one short transaction per
  call (like ``system/transfers.sqlite``); :meth:`SharedBans.changed` is SQLite's
  ``PRAGMA data_version``, which tells whether another connection committed since the last
  look without reading the table, so a server can check it at each login for a few
  microseconds and read the bans only when they changed.

Only bans are stored, not the failed logins that lead to one: a failure is counted at each
wrong password, and a write per failure (a disk sync each) is what a guesser could make the
servers pay; a ban is rare. Times are the wall clock (seconds since the epoch): servers on
several machines compare them.

Every method blocks on the file: callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ssftp.errors import BanStoreError, InvalidValueError
from ssftp.sqlite_files import connect_shared, translated

# How long a write waits for another process's transaction before it fails.
BUSY_TIMEOUT_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    address TEXT PRIMARY KEY,
    banned_at REAL NOT NULL,
    until REAL NOT NULL,
    failures INTEGER NOT NULL,
    server TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Ban:
    address: str
    banned_at: float
    until: float
    failures: int  # the failed logins that got it banned
    server: str  # the server that banned it (its host name and process id)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "banned_at": _iso(self.banned_at), "until": _iso(self.until)}

    def describe(self) -> str:
        return (f"{self.address}  banned until {_iso(self.until)}  {self.failures} failures  "
                f"by {self.server}")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def parse_address(text: str) -> str:
    """A client address as the server names it (``::1``, not ``0:0:0:0:0:0:0:1``)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise InvalidValueError(f"{text!r} is not an IP address (such as 192.0.2.7 or "
                                "2001:db8::7)") from None


class BanStore(Protocol):
    """Where a defender keeps its bans."""

    def add(self, ban: Ban) -> None:
        """Keep ``ban`` (replacing one of the same address), and forget the expired ones."""

    def remove(self, address: str, now: float) -> Ban | None:
        """Lift the ban of ``address``: the ban lifted, None when it had none in force."""

    def live(self, now: float) -> list[Ban]:
        """The bans in force at ``now``, oldest first."""

    def changed(self) -> bool:
        """Whether another writer changed the bans since this store last looked (always at
        the first call): a store that only this process writes never is."""

    def close(self) -> None: ...


class MemoryBans:
    """The bans of this process only."""

    def __init__(self) -> None:
        self._bans: dict[str, Ban] = {}
        self._looked = False

    def add(self, ban: Ban) -> None:
        self._forget_expired(ban.banned_at)
        self._bans[ban.address] = ban

    def remove(self, address: str, now: float) -> Ban | None:
        self._forget_expired(now)
        return self._bans.pop(address, None)

    def live(self, now: float) -> list[Ban]:
        self._forget_expired(now)
        return sorted(self._bans.values(), key=lambda ban: ban.banned_at)

    def changed(self) -> bool:
        looked, self._looked = self._looked, True
        return not looked

    def close(self) -> None:
        self._bans.clear()

    def _forget_expired(self, now: float) -> None:
        for address in [ban.address for ban in self._bans.values() if ban.until <= now]:
            del self._bans[address]


class SharedBans:
    """``system/defender.sqlite3``, shared by the servers of a data root (module docstring).
    Used from one thread at a time (a server's defender thread, a command)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data_version: int | None = None
        with self._translated("open it"):
            self._db = connect_shared(path, timeout=BUSY_TIMEOUT_SECONDS, schema=_SCHEMA,
                                      check_same_thread=False)

    def _translated(self, action: str) -> contextlib.AbstractContextManager[None]:
        return translated(BanStoreError, f"ban store {self.path}", action)

    def add(self, ban: Ban) -> None:
        with self._translated("record a ban"):
            self._db.execute("DELETE FROM bans WHERE until <= ?", (ban.banned_at,))
            self._db.execute("INSERT OR REPLACE INTO bans VALUES (?, ?, ?, ?, ?)",
                             (ban.address, ban.banned_at, ban.until, ban.failures, ban.server))

    def remove(self, address: str, now: float) -> Ban | None:
        with self._translated("lift a ban"):
            rows = self._db.execute(
                "DELETE FROM bans WHERE address = ? RETURNING address, banned_at, until, "
                "failures, server", (address,)).fetchall()
        live = [Ban(*row) for row in rows if row[2] > now]
        return live[0] if live else None

    def live(self, now: float) -> list[Ban]:
        with self._translated("read the bans"):
            rows = self._db.execute(
                "SELECT address, banned_at, until, failures, server FROM bans WHERE until > ? "
                "ORDER BY banned_at", (now,)).fetchall()
        return [Ban(*row) for row in rows]

    def changed(self) -> bool:
        with self._translated("look for changes"):
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
        changed = version != self._data_version
        self._data_version = version
        return bool(changed)

    def close(self) -> None:
        self._db.close()
