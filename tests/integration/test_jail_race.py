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
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.support.config import write_config
from tests.support.gateway import ServerThread, unique_name
from tests.support.sftp import connect, sftp_as
from tests.support.system import tmpfs

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
    outside.mkdir(exist_ok=True)  # it may be a mount point already
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


# -- path operations (stat, lstat, readlink, statvfs, setstat, mkdir, rmdir, remove, rename) --

ALL_RIGHTS = "all-rights"
ALL_RIGHTS_PASSWORD = "all-rights-pw"
OUTSIDE_MOUNT = "1m"  # outside is a tmpfs of this size: statvfs tells it from the disk
OUTSIDE_MODE = 0o644
CHMOD_MODE = 0o604
ENTRIES = 3000  # names prepared per destructive op: more than a run ever gets through


@pytest.fixture(scope="module")
def all_rights_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server with one account that may do everything, in clean/race-area/."""
    root = tmp_path_factory.mktemp("all-rights")
    config = write_config(root / "ssftp.yaml", f"""
    sftpPort: 0
    users:
      cleanDir:
        - directory: race-area
          permissions: ["*"]
          auth: {{username: {ALL_RIGHTS}, password: {ALL_RIGHTS_PASSWORD}}}
    """)
    server = ServerThread(config, root / "data")
    yield server
    server.stop()


@pytest.fixture
def path_race(all_rights_gateway, tmp_path: Path) -> Iterator[Race]:
    """``race`` in the all-rights account; outside is its own tmpfs, and both hold the same
    names (links, directories, files) for every operation, told apart by what they show."""
    with tmpfs(tmp_path / "outside", OUTSIDE_MOUNT) as outside:
        race = _race_in(all_rights_gateway.layout.clean / "race-area", outside)
        inside = race.base / "race"
        for directory, marker in ((inside, "marker-in"), (outside, "marker-out")):
            (race.base / marker).write_bytes(b"")
            (directory / "lnk").symlink_to(race.base / marker)
            for number in range(ENTRIES):
                (directory / f"m-{number}").write_bytes(b"")
                (directory / f"m-{number}").chmod(OUTSIDE_MODE)
                (directory / f"d-{number}").mkdir()
                (directory / f"f-{number}").write_bytes(b"")
                (directory / f"r-{number}").write_bytes(b"")
        yield race


@dataclass
class Escapes:
    """Per operation, how often it acted on or showed the outside directory."""

    counts: dict[str, int]
    calls: int = 0

    def __str__(self) -> str:
        return f"{self.calls} rounds; escapes {self.counts}"


async def _path_ops_round(sftp: asyncssh.SFTPClient, race: Race, number: int,
                          escapes: Escapes) -> None:
    """One of each path operation on names in ``race``; what reads shows is counted here,
    what writes did outside is counted at the end (the outside files tell)."""
    where = race.virtual

    async def shown(operation: str, call: Any, leaked: Callable[[Any], bool]) -> None:
        try:
            answer = await call
        except asyncssh.SFTPError:
            return
        if leaked(answer):
            escapes.counts[operation] += 1

    await shown("stat", sftp.stat(f"{where}/x"), lambda attrs: attrs.size == len(OUTSIDE))
    await shown("lstat", sftp.lstat(f"{where}/x"), lambda attrs: attrs.size == len(OUTSIDE))
    await shown("readlink", sftp.readlink(f"{where}/lnk"),
                lambda target: target.endswith("marker-out"))
    await shown("statvfs", sftp.statvfs(where),
                lambda vfs: vfs.blocks * vfs.frsize == 1 << 20)
    for call in (sftp.chmod(f"{where}/m-{number}", CHMOD_MODE),
                 sftp.mkdir(f"{where}/made-{number}"),
                 sftp.rmdir(f"{where}/d-{number}"), sftp.remove(f"{where}/f-{number}"),
                 sftp.rename(f"{where}/r-{number}", f"{where}/r-{number}.moved")):
        with contextlib.suppress(asyncssh.SFTPError):
            await call
    escapes.calls += 1


def _count_written_outside(outside: Path, escapes: Escapes) -> None:
    names = set(os.listdir(outside))
    rounds = range(escapes.calls)
    escapes.counts["setstat"] = sum(
        stat.S_IMODE((outside / f"m-{n}").stat().st_mode) != OUTSIDE_MODE for n in rounds)
    escapes.counts["mkdir"] = sum(f"made-{n}" in names for n in rounds)
    escapes.counts["rmdir"] = sum(f"d-{n}" not in names for n in rounds)
    escapes.counts["remove"] = sum(f"f-{n}" not in names for n in rounds)
    escapes.counts["rename"] = sum(f"r-{n}" not in names for n in rounds)


async def test_path_operations_never_reach_a_swapped_in_outside_directory(all_rights_gateway,
                                                                         path_race):
    escapes = Escapes(dict.fromkeys(("stat", "lstat", "readlink", "statvfs"), 0))
    async with connect(all_rights_gateway.port, ALL_RIGHTS, ALL_RIGHTS_PASSWORD) as conn, \
            conn.start_sftp_client() as sftp:
        with swapping(path_race.base):
            deadline = time.monotonic() + SWAP_SECONDS
            while time.monotonic() < deadline and escapes.calls < ENTRIES:
                await _path_ops_round(sftp, path_race, escapes.calls, escapes)
    _count_written_outside(path_race.outside, escapes)
    assert not any(escapes.counts.values()), str(escapes)
    # Between swaps the real directory was served (the test exercised the race).
    inside = {path.name for path in (path_race.base / "race").iterdir()}
    assert any(name.startswith("made-") for name in inside), str(escapes)
    assert any(name.endswith(".moved") for name in inside), str(escapes)


async def test_path_operations_act_on_the_object_itself(all_rights_gateway):
    """Without a race: setstat changes the file's own mode and times (through its O_PATH
    descriptor's /proc name), stat of a FIFO answers at once (O_PATH never waits for a
    writer), and the names in the root itself work (the root is "." in its descriptor)."""
    area = all_rights_gateway.layout.clean / "race-area"
    name = f"plain-{unique_name()}"
    (area / name).write_bytes(INSIDE)
    os.mkfifo(area / f"{name}.fifo")
    async with connect(all_rights_gateway.port, ALL_RIGHTS, ALL_RIGHTS_PASSWORD) as conn, \
            conn.start_sftp_client() as sftp:
        await sftp.setstat(name, asyncssh.SFTPAttrs(permissions=CHMOD_MODE,
                                                     atime=1_000_000_000, mtime=1_000_000_000))
        fifo = await sftp.stat(f"{name}.fifo")
        await sftp.mkdir(f"{name}.d")
        await sftp.rename(f"{name}.d", f"{name}.moved")
        root = await sftp.lstat("/")
    info = (area / name).stat()
    assert (stat.S_IMODE(info.st_mode), info.st_mtime) == (CHMOD_MODE, 1_000_000_000)
    assert fifo.permissions is not None and stat.S_ISFIFO(fifo.permissions)
    assert (area / f"{name}.moved").is_dir() and not (area / f"{name}.d").exists()
    assert root.permissions is not None and stat.S_ISDIR(root.permissions)
