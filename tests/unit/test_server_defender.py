"""The defender: failures counted in memory, bans held in memory for the logins and kept in a
store shared with the other servers, which it looks at once per login (with a clock of the
test's, never a sleep)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.defender import Defender
from ssftp.bans import Ban, SharedBans
from ssftp.errors import BanStoreError
from tests.support.logs import app_log_records

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def defender(path: Path, clock: Clock, server: str = "gw-1") -> Defender:
    return Defender(max_failures=3, window_seconds=60, ban_seconds=600,
                    store=SharedBans(path), server=server, clock=clock)


async def test_failures_within_the_window_ban_until_the_ban_time_is_over(tmp_path: Path) -> None:
    clock = Clock()
    guard = defender(tmp_path / "bans.sqlite3", clock)
    assert guard.record_failure("192.0.2.7") is False
    clock.now += 61  # out of the window: counted afresh
    assert [guard.record_failure("192.0.2.7") for _ in range(3)] == [False, False, True]
    assert guard.is_banned("192.0.2.7") and not guard.is_banned("192.0.2.8")
    clock.now += 600
    assert not guard.is_banned("192.0.2.7")
    await guard.close()


async def test_a_success_forgets_the_failures(tmp_path: Path) -> None:
    guard = defender(tmp_path / "bans.sqlite3", Clock())
    guard.record_failure("192.0.2.7")
    guard.record_failure("192.0.2.7")
    guard.record_success("192.0.2.7")
    assert guard.record_failure("192.0.2.7") is False
    await guard.close()


async def test_a_ban_holds_on_the_other_servers_and_an_unban_lifts_it_on_all(
        tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "bans.sqlite3"
    one, other = defender(path, clock, "gw-1"), defender(path, clock, "gw-2")
    await other.refresh()
    for _ in range(3):
        one.record_failure("192.0.2.7")
    await one.refresh()  # after the write (one thread, in order): the ban is in the store
    assert not other.is_banned("192.0.2.7")  # not looked yet
    await other.refresh()
    assert other.is_banned("192.0.2.7")
    (stored,) = SharedBans(path).live(clock.now)
    assert (stored.server, stored.failures, stored.until) == ("gw-1", 3, NOW + 600)
    assert SharedBans(path).remove("192.0.2.7", clock.now) == stored  # `ssftp defender unban`
    await one.refresh()
    await other.refresh()
    assert not one.is_banned("192.0.2.7") and not other.is_banned("192.0.2.7")
    await one.close()
    await other.close()


async def test_a_look_begun_before_the_ban_was_written_keeps_the_ban(tmp_path: Path) -> None:
    """The ban is in force here at once; a read of the store that left before its write
    comes back without it, and must not lift it."""
    clock, path = Clock(), tmp_path / "bans.sqlite3"
    guard = defender(path, clock)
    SharedBans(path).add(Ban("198.51.100.1", NOW, NOW + 600, 3, "gw-2"))  # a change to read
    task = asyncio.ensure_future(guard.refresh())
    await asyncio.sleep(0)  # the read is queued before the write
    for _ in range(3):
        guard.record_failure("192.0.2.7")
    await task
    assert guard.is_banned("192.0.2.7") and guard.is_banned("198.51.100.1")
    await guard.close()


async def test_an_unreadable_store_keeps_the_bans_held_here(tmp_path: Path) -> None:
    """Said once while it lasts (a look at every login would flood the log)."""

    class Broken(SharedBans):
        def changed(self) -> bool:
            raise BanStoreError("ban store x: could not look for changes: disk I/O error")

    guard = Defender(max_failures=1, store=Broken(tmp_path / "bans.sqlite3"), clock=Clock())
    with app_log_records() as records:
        guard.record_failure("192.0.2.7")
        await guard.refresh()
        await guard.refresh()
    assert guard.is_banned("192.0.2.7")
    assert [r.getMessage() for r in records].count("ban store unavailable") == 1
    await guard.close()
