"""A partner cannot keep its own upload from ever being judged by setting its attributes again
and again (issue: SETSTAT by path in the minute after the close, hammered, made every scan
attempt "changed while it was being scanned", retried for ever).

A real server, a real clamd scanning with ssftp's Scanner (in a thread, as the watcher's flow
runs it), and a real asyncssh client repeating SETSTAT (mode and times, as
``put(preserve=True)`` sends them) on the file it has just uploaded, before and during the
scans.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from ssftp.scan.claims import Claims
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.scanner import Scanner
from tests.support.config import PASSWORDS, gateway_config, write_config
from tests.support.gateway import ServerThread, beside, unique_name

# Big enough that clamd takes a while on it (under the test clamd's 10 MiB limit).
FILE_BYTES = 9 << 20
ATTEMPTS = 20  # scans tried before the test gives up on the file ever being judged
CHANGED = "the file changed while it was being scanned"


@pytest.fixture
def server(tmp_path: Path, keys, gateway) -> Iterator[ServerThread]:
    config = write_config(tmp_path / "ssftp.yaml", gateway_config(keys))
    with beside(ServerThread(config, tmp_path / "data"), gateway) as started:
        yield started


def scan_until_judged(scanner: Scanner, staged: Path) -> list[ScanResult]:
    """Scan the file again while it comes back to staging, as the watcher would."""
    results: list[ScanResult] = []
    while len(results) < ATTEMPTS:
        result = scanner.scan(staged)
        if result is None:
            break
        results.append(result)
        if result.area is not Area.STAGING:
            break
    return results


def test_setstat_hammer_does_not_keep_a_file_from_its_verdict(server, client: ClamdClient,
                                                              tmp_path: Path) -> None:
    """The partner sets mode and times of its upload as fast as it can, before and during
    the scans: those before the claim apply (its own upload, just published), those after
    are answered OK and change nothing, and the file is judged clean at the first attempt,
    which saw no change (before: every attempt saw one, and the file stayed in staging)."""
    name = f"hammered-{unique_name()}.bin"
    local = tmp_path / name
    local.write_bytes(os.urandom(FILE_BYTES))
    staged = server.layout.staging / "partner-a" / name
    scanner = Scanner(server.layout, client, owners=StagingOwners(server.store.current.loaded
                                                                  .config),
                      instance="gw-test", claims=Claims(server.layout.staging))
    applied = 0

    async def hammer(sftp: asyncssh.SFTPClient, stop: asyncio.Event) -> None:
        nonlocal applied
        mtime = 1_000_000_000
        while not stop.is_set():
            mtime += 1
            try:
                await sftp.setstat(name, asyncssh.SFTPAttrs(permissions=0o600 | (mtime & 0o040),
                                                            atime=mtime, mtime=mtime))
                applied += 1
            except asyncssh.SFTPNoSuchFile:
                pass

    async def scenario() -> tuple[list[ScanResult], BaseException | None]:
        async with asyncssh.connect("127.0.0.1", server.port, username="partner-a",
                                    password=PASSWORDS["partner-a"], known_hosts=None) as conn, \
                conn.start_sftp_client() as sftp:
            await sftp.put(local, name)
            stop = asyncio.Event()
            hammering = asyncio.create_task(hammer(sftp, stop))
            while applied < 20:  # the partner's SETSTATs reach its upload
                await asyncio.sleep(0.01)
            try:
                results = await asyncio.to_thread(scan_until_judged, scanner, staged)
            finally:
                stop.set()
                await hammering
            try:
                await sftp.setstat(name, asyncssh.SFTPAttrs(atime=1, mtime=1))
            except asyncssh.SFTPError as error:
                return results, error
            return results, None

    results, last_setstat = asyncio.run(scenario())
    assert not [result for result in results if CHANGED in result.detail], \
        [result.detail for result in results]
    assert [result.area for result in results] == [Area.CLEAN]
    assert (server.layout.clean / "partner-a" / name).read_bytes() == local.read_bytes()
    assert last_setstat is None  # claimed and moved on: answered OK, and not applied
    assert (server.layout.clean / "partner-a" / name).stat().st_mtime != 1
