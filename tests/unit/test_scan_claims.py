"""ssftp.scan.claims: a claim takes a staged file out of every client's reach and frees its
name; release never replaces a newer upload; the claims of dead scanners are found and taken
over."""

from __future__ import annotations

import os
import socket
import time
from pathlib import PurePosixPath

import pytest

from ssftp.layout import CLAIMS_DIR
from ssftp.scan.claims import (
    Claims,
    process_owner,
)
from tests.support.scanning import dead_owner, stage

# --- claims ---------------------------------------------------------------------------------


def test_process_owner_names_host_pid_and_start_time():
    owner = process_owner()
    host, pid, started = owner.rsplit(".", 2)
    assert host == socket.gethostname()
    assert int(pid) == os.getpid()
    assert started.isdigit() and started != "0"
    assert process_owner(os.getpid()) == owner


def test_claim_takes_the_file_and_frees_its_name(layout):
    staged = stage(layout, "partner-a/report.csv", b"claimed bytes")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    assert claim is not None
    assert claim.origin == staged
    assert claim.sub_path == PurePosixPath("partner-a/report.csv")
    parts = claim.path.relative_to(layout.staging).parts
    assert parts[0] == CLAIMS_DIR and parts[1] == process_owner()
    assert parts[3:] == ("partner-a", "report.csv")
    assert not staged.exists()

    staged.write_bytes(b"a newer upload")  # the name is free for a new file
    assert claim.path.read_bytes() == b"claimed bytes"
    assert staged.read_bytes() == b"a newer upload"
    assert area.held() == [claim.path]


def test_claims_of_the_same_sub_path_never_collide(layout):
    area = Claims(layout.staging)
    claims = []
    for number in range(5):
        staged = stage(layout, "partner-a/same.txt", f"version {number}".encode())
        claims.append(area.claim(staged))
    assert len({claim.path for claim in claims}) == 5
    assert [claim.path.read_bytes() for claim in claims] == [
        f"version {number}".encode() for number in range(5)]
    assert sorted(area.held()) == sorted(claim.path for claim in claims)


def test_claim_of_a_vanished_file_is_none_and_leaves_nothing(layout):
    area = Claims(layout.staging)
    assert area.claim(layout.staging / "partner-a" / "deep" / "gone.txt") is None
    assert area.held() == []
    assert not list(area.directory.rglob("*"))


def test_claim_refuses_a_path_that_is_not_a_staged_file(layout):
    area = Claims(layout.staging)
    with pytest.raises(ValueError, match="is not a file below"):
        area.claim(layout.staging / CLAIMS_DIR / "someone" / "slot")
    with pytest.raises(ValueError):
        area.claim(layout.clean / "partner-a" / "x.txt")


def test_release_puts_the_file_back_when_its_name_is_free(layout):
    staged = stage(layout, "partner-a/deep/er/file.bin", b"\x00bytes\xff")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    staged.parent.rmdir()  # its directory may even have gone meanwhile
    assert claim.release() == staged
    assert staged.read_bytes() == b"\x00bytes\xff"
    assert staged.stat().st_nlink == 1
    assert not claim.path.exists()
    assert area.held() == []
    assert not list(area.directory.rglob("*"))  # the claim's directories are pruned


def test_release_never_replaces_a_newer_upload(layout):
    staged = stage(layout, "partner-a/file.txt", b"older")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    staged.write_bytes(b"newer")
    assert claim.release() == claim.path
    assert staged.read_bytes() == b"newer"
    assert claim.path.read_bytes() == b"older"
    assert area.held() == [claim.path]


def test_sub_path_of_staged_and_claimed_paths(layout):
    area = Claims(layout.staging)
    assert area.sub_path_of(layout.staging / "partner-a" / "a b" / "c.txt") == PurePosixPath(
        "partner-a/a b/c.txt")
    foreign = layout.staging / CLAIMS_DIR / "other.1.2" / "17-0" / "partner-b" / "x" / "y.csv"
    assert area.sub_path_of(foreign) == PurePosixPath("partner-b/x/y.csv")
    claim = area.claim(stage(layout, "partner-a/n/ü: x.txt", b"1"))
    assert area.sub_path_of(claim.path) == PurePosixPath("partner-a/n/ü: x.txt")


def test_orphaned_finds_dead_owners_only(layout):
    staging = layout.staging
    dead = Claims(staging, owner=dead_owner())
    dead_claim = dead.claim(stage(layout, "partner-a/dead.txt", b"dead"))
    # Same host and pid as a live process, but another start time: the pid was reused.
    reused = Claims(staging, owner=f"{socket.gethostname()}.{os.getpid()}.1")
    reused_claim = reused.claim(stage(layout, "partner-a/reused.txt", b"reused"))
    live = Claims(staging, owner=process_owner())
    live_claim = live.claim(stage(layout, "partner-a/live.txt", b"live"))
    fresh_foreign = Claims(staging, owner="other-host.example.1234.5678")
    fresh_claim = fresh_foreign.claim(stage(layout, "partner-a/foreign.txt", b"foreign"))
    old_foreign = Claims(staging, owner="old-host.example.99.99")
    old_claim = old_foreign.claim(stage(layout, "partner-a/old.txt", b"old"))
    # Two minutes without a beat: a worker on another host that died (it was an hour).
    expired = time.time() - 120
    os.utime(old_foreign.directory, (expired, expired))

    observer = Claims(staging, owner="observer.example.1.1")
    orphans = set(observer.orphaned())
    assert orphans == {dead_claim.path, reused_claim.path, old_claim.path}
    assert live_claim.path not in orphans and fresh_claim.path not in orphans
    # An area never reports its own claims as orphans (its own held() lists them).
    assert dead_claim.path not in dead.orphaned()
    assert dead.held() == [dead_claim.path]


def test_orphans_are_taken_over_and_their_empty_directories_removed(layout):
    dead = Claims(layout.staging, owner=dead_owner())
    taken = dead.claim(stage(layout, "partner-a/sub/taken.txt", b"take me"))
    left = dead.claim(stage(layout, "partner-b/left.txt", b"leave me"))
    empty_dead = Claims(layout.staging, owner=dead_owner())
    (empty_dead.directory / "slot" / "partner-a").mkdir(parents=True)
    live = Claims(layout.staging)
    (live.directory / "slot").mkdir(parents=True)

    area = Claims(layout.staging, owner="taker.example.1.1")
    again = area.claim(taken.path)
    assert again.sub_path == PurePosixPath("partner-a/sub/taken.txt")
    assert again.origin == layout.staging / "partner-a" / "sub" / "taken.txt"
    assert again.path.read_bytes() == b"take me"

    area.remove_empty_orphans()
    assert not empty_dead.directory.exists()
    assert left.path.read_bytes() == b"leave me"  # files are never removed
    assert (live.directory / "slot").is_dir()  # a live owner's directories are not touched
    assert set(area.orphaned()) == {left.path}
