"""The jail holds while another writer changes the directories on disk (issue 12, item 2).

On shared storage another writer can turn ``race`` from a real directory into a symlink to a
directory outside the account, and back, at any moment. A check of the path (realpath) followed
by an open by name is then a race the client can win: the server must verify what it opened.
Here a thread swaps ``race`` by rename of prepared names while a real SFTP client reads, lists
and uploads through it; refusals and errors are fine, the outside directory never is.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from tests.support import unique_name
from tests.test_permissions_e2e import sftp_as

SWAP_SECONDS = 5.0
INSIDE = b"inside"
OUTSIDE = b"OUTSIDE"


@dataclass
class Tally:
    """What the client got, so a failure says how often the outside leaked."""

    inside: int = 0
    outside: int = 0
    refused: int = 0

    def __str__(self) -> str:
        return f"inside={self.inside} outside={self.outside} refused/failed={self.refused}"


@dataclass(frozen=True)
class Race:
    virtual: str  # the client's path of ``race``
    base: Path  # the host directory holding ``race`` and the parked names
    outside: Path  # where the symlink leads: outside every account


def _swap(base: Path, stop: threading.Event) -> None:
    """Turn ``race`` into the symlink and back, by rename, as fast as the disk allows."""
    race, parked_dir, parked_link = base / "race", base / "parked-dir", base / "parked-link"
    while not stop.is_set():
        os.rename(race, parked_dir)
        os.rename(parked_link, race)
        os.rename(race, parked_link)
        os.rename(parked_dir, race)


@contextlib.contextmanager
def swapping(base: Path) -> Iterator[None]:
    stop = threading.Event()
    swapper = threading.Thread(target=_swap, args=(base, stop), daemon=True)
    swapper.start()
    try:
        yield
    finally:
        stop.set()
        swapper.join(timeout=30)
    assert not swapper.is_alive()


def _prepare(base: Path, outside: Path) -> None:
    outside.mkdir()
    (outside / "x").write_bytes(OUTSIDE)
    (outside / "secret").write_bytes(OUTSIDE)
    base.mkdir()
    (base / "race").mkdir()
    (base / "race" / "x").write_bytes(INSIDE)
    (base / "parked-link").symlink_to(outside, target_is_directory=True)


def _race_in(account_root: Path, outside: Path) -> Race:
    name = f"race-{unique_name()}"
    _prepare(account_root / name, outside)
    return Race(f"/{name}/race", account_root / name, outside)


@pytest.fixture
def clean_race(gateway, tmp_path: Path) -> Race:
    """``race`` in consumer-a's jail (clean/partner-a/race-<t>/)."""
    return _race_in(gateway.layout.clean / "partner-a", tmp_path / "outside")


@pytest.fixture
def staging_race(gateway, tmp_path: Path) -> Race:
    """``race`` in partner-a's upload area (staging/partner-a/race-<t>/)."""
    return _race_in(gateway.layout.staging / "partner-a", tmp_path / "outside")


async def _read(sftp: asyncssh.SFTPClient, path: str, tally: Tally) -> None:
    try:
        async with sftp.open(path, "rb") as handle:
            data = await handle.read()
    except asyncssh.SFTPError:
        tally.refused += 1
        return
    if data == OUTSIDE:
        tally.outside += 1
    elif data == INSIDE:
        tally.inside += 1


async def _list(sftp: asyncssh.SFTPClient, path: str, tally: Tally) -> None:
    try:
        names = await sftp.listdir(path)
    except asyncssh.SFTPError:
        tally.refused += 1
        return
    if "secret" in names:
        tally.outside += 1
    elif "x" in names:
        tally.inside += 1


async def test_opens_and_listings_never_reach_a_swapped_in_outside_directory(gateway,
                                                                             clean_race):
    reads, listings = Tally(), Tally()
    async with sftp_as(gateway, "consumer-a") as sftp:
        with swapping(clean_race.base):
            deadline = time.monotonic() + SWAP_SECONDS
            while time.monotonic() < deadline:
                await _read(sftp, f"{clean_race.virtual}/x", reads)
                await _list(sftp, clean_race.virtual, listings)
    assert (reads.outside, listings.outside) == (0, 0), f"opens {reads}; listings {listings}"
    # The server still serves the real directory between swaps (the test exercised the race).
    assert reads.inside > 0 and reads.refused > 0, str(reads)
    assert listings.inside > 0, str(listings)


async def test_uploads_never_land_in_a_swapped_in_outside_directory(gateway, staging_race):
    uploads = Tally()
    async with sftp_as(gateway, "partner-a") as sftp:
        with swapping(staging_race.base):
            deadline = time.monotonic() + SWAP_SECONDS
            number = 0
            while time.monotonic() < deadline:
                number += 1
                try:
                    async with sftp.open(f"{staging_race.virtual}/up-{number}", "wb") as handle:
                        await handle.write(INSIDE)
                except asyncssh.SFTPError:
                    uploads.refused += 1
                else:
                    uploads.inside += 1
    assert sorted(os.listdir(staging_race.outside)) == ["secret", "x"], str(uploads)
    assert (staging_race.outside / "x").read_bytes() == OUTSIDE
    assert uploads.inside > 0, str(uploads)
    published = [path for path in (staging_race.base / "race").iterdir()
                 if path.name.startswith("up-")]
    assert all(path.read_bytes() == INSIDE for path in published)
