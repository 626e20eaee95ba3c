"""deployments.rescan_watcher with the fake clamd and rescans run in place of Prefect's: a look
rescans clean/ when the loaded signatures are not those the last whole rescan was for (a first
start too), remembers them only once every file had its look, hands in files a scan passed with
older signatures, and leaves the work to a rescan that holds the lock."""

from __future__ import annotations

import asyncio
from pathlib import Path

from deployments.rescan_watcher import RESCAN_LOCK, RescanWatcher
from ssftp.config.schema import RescanSettings
from ssftp.run_lock import exclusive_run
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.record import AuditRecorder
from ssftp.scan.rescan import Rescanner, rescanned_for
from ssftp.scan.results import ScanResult
from testkit.fake_clamd import VERSION, like_clamd
from tests.support.scanning import scan_result, write

LOADED = "ClamAV 1.0.0/27000"


class Runs:
    """The rescan runs, without Prefect: each file looked at in turn, the calls kept."""

    def __init__(self, rescanner: Rescanner) -> None:
        self.rescanner = rescanner
        self.calls: list[tuple[list[str], str]] = []

    async def rescan(self, paths: list[Path], signatures: str) -> list[ScanResult]:
        self.calls.append(([p.name for p in paths], signatures))
        return [r for p in paths if (r := self.rescanner.rescan(p)) is not None]


def watcher(layout, owners, fake_clamd, include_archive=False) -> tuple[RescanWatcher, Runs]:
    runs = Runs(Rescanner(layout, ClamdClient(fake_clamd.address, timeout=5), AuditRecorder(),
                          owners, "gw-test"))
    settings = RescanSettings(includeArchive=include_archive)
    return RescanWatcher(layout, runs=lambda: runs, settings=lambda: settings), runs


def test_new_signatures_rescan_clean_once_and_are_remembered(layout, owners, fake_clamd):
    write(layout.clean / "partner-a" / "a.txt", b"a")
    write(layout.uploadarchive / "partner-a" / "old.txt", b"delivered")
    looking, runs = watcher(layout, owners, fake_clamd)
    asyncio.run(looking.look())  # a first start: nothing says what clean/ was scanned with
    asyncio.run(looking.look())
    assert runs.calls == [(["a.txt"], LOADED)]
    assert rescanned_for(layout) == LOADED
    fake_clamd.answer = lambda request: (
        VERSION.replace("27000", "27001").encode() if request.command == "VERSION"
        else like_clamd(request))
    asyncio.run(looking.look())
    assert runs.calls[-1] == (["a.txt"], "ClamAV 1.0.0/27001")


def test_the_archive_is_rescanned_when_asked(layout, owners, fake_clamd):
    write(layout.clean / "partner-a" / "a.txt", b"a")
    write(layout.uploadarchive / "partner-a" / "old.txt", b"delivered")
    looking, runs = watcher(layout, owners, fake_clamd, include_archive=True)
    asyncio.run(looking.look())
    assert runs.calls == [(["a.txt", "old.txt"], LOADED)]


def test_a_rescan_cut_short_by_clamd_is_not_remembered(layout, owners, fake_clamd):
    write(layout.clean / "partner-a" / "a.txt", b"a")
    looking, runs = watcher(layout, owners, fake_clamd)

    async def clamd_went_away(paths, signatures):
        runs.calls.append(([p.name for p in paths], signatures))
        return [scan_result("error", clamd_unreachable=True, reason="rescan")]

    runs.rescan = clamd_went_away  # type: ignore[method-assign]
    asyncio.run(looking.look())
    assert rescanned_for(layout) is None
    asyncio.run(looking.look())
    assert len(runs.calls) == 2  # started again


def test_a_file_passed_with_older_signatures_is_looked_at_again(layout, owners, fake_clamd):
    looking, runs = watcher(layout, owners, fake_clamd)
    asyncio.run(looking.look())
    late = write(layout.clean / "partner-a" / "late.txt", b"scanned before the reload")
    current = write(layout.clean / "partner-a" / "current.txt", b"scanned after it")
    looking.judged([
        scan_result("clean", destination="clean/partner-a/late.txt", engine="ClamAV 1.0.0",
                    database="26999"),
        scan_result("clean", destination="clean/partner-a/current.txt", engine="ClamAV 1.0.0",
                    database="27000"),
        scan_result("infected", engine="ClamAV 1.0.0", database="26999")])
    asyncio.run(looking.look())
    assert runs.calls == [([late.name], LOADED)]
    assert current.exists()
    asyncio.run(looking.look())
    assert len(runs.calls) == 1


def test_a_look_leaves_the_work_to_a_rescan_that_holds_the_lock(layout, owners, fake_clamd):
    write(layout.clean / "partner-a" / "a.txt", b"a")
    looking, runs = watcher(layout, owners, fake_clamd)
    with exclusive_run(layout.system, *RESCAN_LOCK) as ours:
        assert ours
        asyncio.run(looking.look())
    assert runs.calls == [] and rescanned_for(layout) is None


def test_scanning_switched_off_looks_at_nothing(layout):
    looking = RescanWatcher(layout, runs=lambda: None, settings=RescanSettings)
    asyncio.run(looking.look())  # nothing to rescan with: no clamd is asked
    assert rescanned_for(layout) is None
