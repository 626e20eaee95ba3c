"""The defender's ban stores: the memory one, and the SQLite file every server of a data root
shares (two connections on one file stand for two servers)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ssftp.bans import Ban, MemoryBans, SharedBans, parse_address
from ssftp.errors import BanStoreError, InvalidValueError

NOW = 1_800_000_000.0


def ban(address: str, at: float = NOW, seconds: float = 900.0) -> Ban:
    return Ban(address, at, at + seconds, 10, "gw-1 pid 42")


def test_a_ban_made_through_one_connection_is_seen_through_another(tmp_path: Path) -> None:
    one, other = (SharedBans(tmp_path / "defender.sqlite3") for _ in range(2))
    assert other.changed() is True  # the first look always reads
    assert other.changed() is False
    one.add(ban("192.0.2.7"))
    assert other.changed() is True
    assert other.live(NOW) == [ban("192.0.2.7")]
    assert other.changed() is False  # nothing new: no read needed


def test_an_unban_is_seen_and_says_what_it_lifted(tmp_path: Path) -> None:
    one, other = (SharedBans(tmp_path / "defender.sqlite3") for _ in range(2))
    one.add(ban("192.0.2.7"))
    other.changed()
    assert other.remove("192.0.2.7", NOW + 1) == ban("192.0.2.7")
    assert one.changed() is True and one.live(NOW + 1) == []
    assert other.remove("192.0.2.7", NOW + 1) is None  # not banned any more


@pytest.mark.parametrize("store_kind", ["memory", "shared"])
def test_expired_bans_are_not_in_force_and_are_forgotten(tmp_path: Path, store_kind: str) -> None:
    store = MemoryBans() if store_kind == "memory" else SharedBans(tmp_path / "bans.sqlite3")
    store.add(ban("192.0.2.7", seconds=60))
    store.add(ban("2001:db8::7", at=NOW + 10))
    assert [b.address for b in store.live(NOW + 61)] == ["2001:db8::7"]
    assert store.remove("192.0.2.7", NOW + 61) is None  # expired: nothing to lift
    store.add(ban("198.51.100.1", at=NOW + 100))  # and a write forgets the expired ones
    if isinstance(store, SharedBans):
        rows = sqlite3.connect(store.path).execute("SELECT address FROM bans").fetchall()
        assert sorted(rows) == [("198.51.100.1",), ("2001:db8::7",)]


def test_a_ban_again_replaces_the_one_before(tmp_path: Path) -> None:
    store = SharedBans(tmp_path / "bans.sqlite3")
    store.add(ban("192.0.2.7", seconds=60))
    store.add(ban("192.0.2.7", at=NOW + 30, seconds=600))
    assert store.live(NOW + 61) == [ban("192.0.2.7", at=NOW + 30, seconds=600)]


def test_the_memory_store_is_changed_only_at_the_first_look() -> None:
    store = MemoryBans()
    assert store.changed() is True
    store.add(ban("192.0.2.7"))
    assert store.changed() is False  # only its own process writes it


def test_an_unreadable_store_is_one_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "defender.sqlite3"
    path.write_bytes(b"not a database, but long enough to be read as one" * 100)
    with pytest.raises(BanStoreError, match=r"ban store .*defender\.sqlite3: could not open it"):
        SharedBans(path)


def test_a_ban_reads_as_a_line_and_as_json() -> None:
    shown = ban("192.0.2.7")
    assert shown.as_dict() == {"address": "192.0.2.7", "banned_at": "2027-01-15T08:00:00+00:00",
                               "until": "2027-01-15T08:15:00+00:00", "failures": 10,
                               "server": "gw-1 pid 42"}
    assert shown.describe() == ("192.0.2.7  banned until 2027-01-15T08:15:00+00:00  "
                                "10 failures  by gw-1 pid 42")


def test_addresses_are_named_as_the_server_names_them() -> None:
    assert parse_address(" 0:0:0:0:0:0:0:1 ") == "::1"
    assert parse_address("192.0.2.7") == "192.0.2.7"
    with pytest.raises(InvalidValueError, match=r"'192\.0\.2' is not an IP address"):
        parse_address("192.0.2")
