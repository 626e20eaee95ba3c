"""server.verdict_wait against real files moved by the real scanner and a real clamd: where the
published inode went, whether a verdict record is its own, and when the wait ends."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from server.off_loop import SessionThread
from server.verdict_wait import (
    Destinations,
    PublishedFile,
    Told,
    verdict_at_close,
)
from ssftp.addresses import ClamdAddress
from ssftp.layout import DataLayout
from ssftp.moves import publish, temp_path_beside
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from ssftp.scan.router import VERDICT_RECORD_SUFFIX
from testkit.files import EICAR
from tests.support.scanning import CLAMD_MAX_FILE_SIZE, make_scanner
from tests.support.system import tmpfs

SUB = "partner-a/inbox/eicar.com"


# --- following the published inode through the real scanner -------------------------------


@pytest.fixture
def scanner(layout: DataLayout, client: ClamdClient, owners: StagingOwners):
    return make_scanner(layout, client, owners)


def published(layout: DataLayout, sub: str, data: bytes, *, replace: bool = False,
              ) -> PublishedFile:
    """An upload published the way the server does it: a temp file, a descriptor of its inode
    taken before the final name exists (by a hard link without ``replace``: the temp name,
    which the descriptor names, is then removed)."""
    target = layout.staging / sub
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_beside(target)
    temp.write_bytes(data)
    fd = os.open(temp, os.O_PATH | os.O_CLOEXEC)
    publish(temp, target, replace=replace, durable=False)
    return PublishedFile.just_published(fd, target, Destinations.of(layout))


@pytest.mark.parametrize("replace", [False, True])
def test_a_clean_file_is_told_ok_once_in_clean(layout, scanner, replace: bool):
    upload = published(layout, "partner-a/report.csv", b"a,b\n1,2\n", replace=replace)
    assert upload.look() is None  # staged: not decided yet
    result = scanner.scan(layout.staging / "partner-a/report.csv")
    assert result is not None and result.destination == "clean/partner-a/report.csv"
    assert upload.look() == Told(None)
    upload.close()


def test_an_infected_file_is_told_its_own_signature(layout, scanner):
    upload = published(layout, SUB, EICAR)
    assert upload.look() is None
    result = scanner.scan(layout.staging / SUB)
    assert result is not None and result.signature
    assert result.destination == f"quarantine/{SUB}"
    assert upload.look() == Told(f"infected: {result.signature}")
    upload.close()


def test_two_quarantined_files_of_one_name_are_each_told_their_own(layout, scanner):
    """The second lands as ``eicar (2).com`` beside ``eicar.com``, whose record is not its:
    it is told its own verdict (unscannable, as it has a second hard link), not the first's."""
    first = published(layout, SUB, EICAR)
    first_result = scanner.scan(layout.staging / SUB)
    second = published(layout, SUB, b"harmless")
    os.link(layout.staging / SUB, layout.root / "second-name")
    second_result = scanner.scan(layout.staging / SUB)
    assert first_result is not None and second_result is not None
    assert second_result.destination == "quarantine/partner-a/inbox/eicar (2).com"
    assert second.look() == Told(f"unscannable: {second_result.detail}")
    assert first.look() == Told(f"infected: {first_result.signature}")
    first.close()
    second.close()


def test_an_unscannable_file_is_told_the_reason(layout, scanner):
    upload = published(layout, "partner-a/linked.bin", b"data")
    os.link(layout.staging / "partner-a/linked.bin", layout.root / "other-name")
    result = scanner.scan(layout.staging / "partner-a/linked.bin")
    assert result is not None and result.destination == "quarantine/partner-a/linked.bin"
    told = upload.look()
    assert told == Told(f"unscannable: {result.detail}")
    assert "hard links" in result.detail
    upload.close()


def test_a_file_released_after_a_failed_scan_is_followed_back_in_staging(
        layout, scanner, owners, tmp_path):
    """clamd unreachable: the claim goes back to staging by a new hard link, the descriptor's
    name is removed; the next look finds the file where it was published, and follows it from
    there to quarantine."""
    upload = published(layout, SUB, EICAR, replace=True)
    unreachable = ClamdClient(ClamdAddress.parse(str(tmp_path / "no-clamd.sock")), timeout=5,
                              max_file_size=CLAMD_MAX_FILE_SIZE)
    failed = make_scanner(layout, unreachable, owners).scan(layout.staging / SUB)
    assert failed is not None and failed.destination == f"staging/{SUB}"
    assert upload.look() is None  # back in staging, followed there
    result = scanner.scan(layout.staging / SUB)
    assert result is not None and result.destination == f"quarantine/{SUB}"
    assert upload.look() == Told(f"infected: {result.signature}")
    upload.close()


def test_a_record_that_is_not_the_files_says_only_quarantined(layout, scanner):
    upload = published(layout, SUB, EICAR)
    assert scanner.scan(layout.staging / SUB) is not None
    record_path = layout.quarantine / (SUB + VERDICT_RECORD_SUFFIX)
    changed = {**json.loads(record_path.read_text()), "size": 1}
    record_path.write_text(json.dumps(changed))
    assert upload.look() == Told("quarantined")
    record_path.unlink()
    assert upload.look() == Told("quarantined")
    upload.close()


def test_a_file_copied_across_filesystems_is_told_ok(layout, scanner):
    """quarantine/ on another filesystem: the scanner copies the file, the published inode is
    gone, and which record is this upload's cannot be told without hashing: OK."""
    with tmpfs(layout.quarantine, "1m"):
        upload = published(layout, SUB, EICAR)
        result = scanner.scan(layout.staging / SUB)
        assert result is not None and result.destination == f"quarantine/{SUB}"
        assert (layout.quarantine / SUB).read_bytes() == EICAR
        assert upload.look() == Told(None)
        upload.close()


# --- the wait --------------------------------------------------------------------------


def wait(upload: PublishedFile, seconds: float, gone: bool = False) -> str | None:
    async def run() -> str | None:
        executor = SessionThread()
        try:
            return await asyncio.wait_for(
                verdict_at_close(executor, upload, seconds, lambda: gone), 120)
        finally:
            executor.shutdown()
    return asyncio.run(run())


def descriptor_is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_the_wait_ends_with_ok_when_nobody_scans_and_closes_the_descriptor(layout):
    upload = published(layout, SUB, EICAR)
    fd = upload._fd
    assert wait(upload, 0.3) is None
    assert (layout.staging / SUB).read_bytes() == EICAR  # untouched: still waiting its scan
    assert descriptor_is_closed(fd)


def test_the_wait_ends_when_the_client_has_gone(layout):
    upload = published(layout, SUB, EICAR)
    assert wait(upload, 300, gone=True) is None  # a hang would fail at 120 s


def test_the_wait_returns_the_verdict(layout, scanner):
    upload = published(layout, SUB, EICAR)
    result = scanner.scan(layout.staging / SUB)
    assert result is not None
    assert wait(upload, 60) == f"infected: {result.signature}"
