"""ssftp.scan.workers: a worker's name is safe in a tag, a log line and a file name, and a
worker nobody named is told apart by its host and pid; the live workers share the staged files
fairly and agree on who owns which, a worker's leaving moves only its share, and a file its
owner does not claim is taken by another after the takeover time."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from ssftp.errors import InvalidValueError
from ssftp.scan.workers import (
    LEASE_SECONDS,
    Heartbeats,
    Share,
    checked_name,
    default_name,
    live_workers,
    owner_of,
    worker_tag,
)


def test_an_unnamed_worker_is_its_host_and_pid():
    assert default_name() == f"{socket.gethostname()}.{os.getpid()}"
    assert checked_name(default_name()) == default_name()


@pytest.mark.parametrize("name", ["scan-1", "eu_west.worker-2", "7", "a" * 127])
def test_a_name_of_safe_characters_is_taken(name):
    assert checked_name(name) == name
    assert worker_tag(name) == f"worker:{name}"


@pytest.mark.parametrize("name", ["", "-leading-dash", ".hidden", "two words", "tab\tname",
                                  "line\nbreak", "slash/name", "colon:name", "é", "a" * 128])
def test_any_other_name_is_refused_naming_what_a_name_may_be(name):
    with pytest.raises(InvalidValueError, match="1 to 127 letters, digits"):
        checked_name(name)


# --- the share: which ready files a worker batches ------------------------------------------

KEYS = [f"partner-{n % 7}/file-{n:05d}.bin" for n in range(3000)]


@pytest.mark.parametrize("count", [2, 3, 4])
def test_the_live_workers_each_own_a_fair_share_and_agree_on_it(count):
    workers = [f"w{n}" for n in range(count)]
    owners = [owner_of(key, workers) for key in KEYS]
    assert owners == [owner_of(key, list(reversed(workers))) for key in KEYS]  # any order
    shares = [owners.count(worker) for worker in workers]
    assert max(shares) <= 2 * min(shares), shares


def test_a_worker_that_leaves_moves_only_its_own_share():
    before = {key: owner_of(key, ["a", "b", "c"]) for key in KEYS}
    after = {key: owner_of(key, ["a", "b"]) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved and all(before[key] == "c" for key in moved)


def shared(name: str, *workers: str, takeover: float = 5.0) -> Share:
    share = Share(name, lambda path: path.as_posix(), takeover_seconds=takeover)
    share.workers = tuple(sorted(workers))
    return share


def test_a_lone_worker_takes_every_file():
    paths = [Path(key) for key in KEYS[:50]]
    assert shared("a", "a").take(paths, now=0.0) == paths


def test_another_workers_file_waits_for_its_claim_and_is_taken_if_nobody_claims_it():
    share = shared("a", "a", "b")
    paths = [Path(key) for key in KEYS[:40]]
    mine = [path for path in paths if owner_of(path.as_posix(), ["a", "b"]) == "a"]
    theirs = [path for path in paths if path not in mine]
    assert share.take(paths, now=100.0) == mine
    claimed, stuck = theirs[0], theirs[1:]
    share.forget(claimed)  # its owner claimed it: it left staging
    assert share.take([], now=104.9) == []
    assert share.take([], now=105.0) == stuck  # nobody took them within the takeover
    assert len(share) == 0


def test_a_worker_that_leaves_gives_its_waiting_files_to_the_others_at_once():
    share = shared("a", "a", "b")
    paths = [Path(key) for key in KEYS[:40]]
    theirs = [path for path in paths if owner_of(path.as_posix(), ["a", "b"]) == "b"]
    share.take(paths, now=0.0)
    share.workers = ("a",)  # b's heartbeat went stale, or b stopped
    assert share.take([], now=0.5) == theirs


def test_a_live_worker_is_one_whose_heartbeat_is_fresh(tmp_path):
    directory = tmp_path / "workers"
    other = Heartbeats(directory, "b")
    other.beat()
    stale = Heartbeats(directory, "c")
    stale.beat()
    past = (directory / "c").stat().st_mtime - LEASE_SECONDS - 1
    os.utime(directory / "c", (past, past))
    (directory / "not a worker").touch()  # no name a worker can have: ignored
    (directory / "d").mkdir()  # nor anything but a file
    assert Heartbeats(directory, "a").beat() == ("a", "b")
    other.leave()
    assert Heartbeats(directory, "a").beat() == ("a",)


def test_live_workers_are_those_whose_heartbeat_is_younger_than_the_lease(tmp_path: Path):
    now = time.time()
    for name, age in [("up.1", 0.5), ("w2", LEASE_SECONDS - 1), ("w3", LEASE_SECONDS + 1)]:
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (now - age, now - age))
    assert set(live_workers(tmp_path, now)) == {"up.1", "w2"}
    assert live_workers(tmp_path / "missing", now) == {}
