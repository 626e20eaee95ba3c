"""server.quota: what an account's area holds, counted from the filesystem plus this process's
uploads; the refusal's wording; what ``df`` is told; the figures the metrics read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from server.quota import (
    STATVFS_BLOCK,
    AccountTallies,
    AccountTally,
    Usage,
    count_area,
    exceeded,
    human_size,
    statvfs_within,
)
from ssftp.config.schema import Quota
from ssftp.metrics import QuotaFigures

GIB = 1 << 30


def limit(max_bytes: int | None = None, max_files: int | None = None) -> Quota:
    return Quota.model_validate({"maxBytes": max_bytes, "maxFiles": max_files})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    ((1 << 20) - 1, "1.0 MiB"), (GIB, "1.0 GiB"), (5 * GIB // 2, "2.5 GiB"), (1 << 40, "1.0 TiB"),
])
def test_sizes_are_shown_in_binary_units_with_one_decimal(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_only_growth_beyond_the_quota_is_refused_and_the_reason_says_how_full() -> None:
    quota = limit(max_bytes=GIB, max_files=2)
    assert exceeded(quota, Usage(GIB - 10, 1), 10, 1) is None
    assert exceeded(quota, Usage(GIB, 1), 1, 0) == "quota exceeded: 1.0 GiB of 1.0 GiB"
    assert exceeded(quota, Usage(GIB // 2, 2), 0, 1) == "quota exceeded: 2 files of 2"
    # Lowered below the usage: what does not grow still goes through.
    assert exceeded(limit(max_bytes=10), Usage(GIB, 5), 0, 0) is None
    assert exceeded(limit(max_files=1), Usage(0, 5), 100, 0) is None


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_the_count_is_every_regular_file_below_the_root_and_nothing_a_link_leads_to(
        tmp_path: Path) -> None:
    root = tmp_path / "staging" / "partner"
    write(root / "a.csv", 10)
    write(root / "in" / "2024" / "b.csv", 20)
    write(root / ".ssftp-partials" / "0123", 30)  # kept for a resume: counts
    write(root / ".ssftp-tmp-x", 40)  # an upload in progress: counts
    outside = write(tmp_path / "outside" / "big", 1000)
    os.symlink(outside, root / "link")
    os.symlink(outside.parent, root / "dir-link")
    os.mkfifo(root / "fifo")
    assert count_area(root, ()) == (Usage(100, 4), {})
    watched = (root / "in" / "2024" / "b.csv").stat().st_ino
    assert count_area(root, {watched}) == (Usage(100, 4), {watched: 20})
    assert count_area(tmp_path / "gone", ()) == (Usage(0, 0), {})


def tally_at(root: Path, quota: Quota, clock: Clock | None = None) -> AccountTally:
    root.mkdir(parents=True, exist_ok=True)
    return AccountTally(root, "partner", quota, clock or Clock())


def test_an_upload_counts_as_its_writes_arrive_and_a_discard_gives_them_back(
        tmp_path: Path) -> None:
    quota = limit(max_bytes=100, max_files=5)
    tally = tally_at(tmp_path / "area", quota)
    write(tally.root / "old", 30)
    assert tally.admit(quota, 0, 1) is None
    assert tally.usage() == Usage(30, 1)
    temp = write(tally.root / ".ssftp-tmp-1", 0)
    hold = tally.hold(quota, temp.stat().st_ino, 0, resumed=False)
    assert hold.grow(50) is None  # not on disk yet: counted all the same
    assert tally.usage() == Usage(80, 2)
    assert hold.grow(71) == "quota exceeded: 80 B of 100 B"
    assert tally.usage() == Usage(80, 2)  # the refused growth is not counted
    write(temp, 50)
    tally.recount()  # sees the upload's file: still counted once
    assert tally.usage() == Usage(80, 2)
    temp.unlink()
    hold.settle(kept=False)
    assert tally.usage() == Usage(30, 1)
    tally.recount()
    assert tally.usage() == Usage(30, 1)


def test_a_published_upload_counts_until_a_recount_sees_the_scanner_took_it(
        tmp_path: Path) -> None:
    quota = limit(max_bytes=100)
    clock = Clock()
    tally = tally_at(tmp_path / "area", quota, clock)
    tally.recount()
    temp = write(tally.root / ".ssftp-tmp-1", 60)
    hold = tally.hold(quota, temp.stat().st_ino, 0, resumed=False)
    assert hold.grow(60) is None
    published = temp.rename(tally.root / "report.csv")
    hold.settle(kept=True)
    assert tally.usage() == Usage(60, 1)
    tally.recount()
    assert tally.usage() == Usage(60, 1)  # seen where it went, counted once
    published.rename(tmp_path / "claimed")  # the scanner takes it out of the area
    assert tally.usage() == Usage(60, 1)  # high until the next recount...
    assert not tally.stale()
    clock.now += 10
    assert tally.stale()
    tally.recount()
    assert tally.usage() == Usage(0, 0)


def test_a_refusal_is_decided_on_a_recount_made_for_it(tmp_path: Path) -> None:
    """A figure left high by files that left since the last recount never refuses; a file
    another writer put there is seen once the recount is stale."""
    quota = limit(max_bytes=100, max_files=1)
    clock = Clock()
    tally = tally_at(tmp_path / "area", quota, clock)
    gone = write(tally.root / "a", 100)
    tally.recount()
    gone.unlink()
    assert not tally.stale()
    assert tally.admit(quota, 100, 1) is None
    write(tally.root / "b", 1)  # by another process
    assert tally.admit(quota, 0, 1) is None  # not seen before the next recount
    clock.now += 10
    assert tally.admit(quota, 0, 1) == "quota exceeded: 1 files of 1"
    assert tally.admit(quota, 0, 0) is None  # a resume adds no file


def test_a_resumed_upload_is_the_file_it_continues_counted_once(tmp_path: Path) -> None:
    quota = limit(max_bytes=100, max_files=1)
    tally = tally_at(tmp_path / "area", quota)
    tally.recount()
    temp = write(tally.root / ".ssftp-tmp-1", 40)
    hold = tally.hold(quota, temp.stat().st_ino, 0, resumed=False)
    hold.grow(40)
    partial = temp.rename(tally.root / "partial")  # the connection dropped: kept
    hold.settle(kept=True)
    resumed = tally.hold(quota, partial.stat().st_ino, 40, resumed=True)  # before a recount
    assert tally.usage() == Usage(40, 1)
    tally.recount()
    resumed.settle(kept=True)
    other = partial.rename(tally.root / "other")
    # Kept by another process (no entry here): the last recount counted it.
    third = tally.hold(quota, other.stat().st_ino, 40, resumed=True)
    assert tally.usage() == Usage(40, 1)
    assert third.grow(100) is None and third.grow(101) is not None


def test_a_truncation_counts_the_upload_at_its_new_size(tmp_path: Path) -> None:
    quota = limit(max_bytes=100)
    tally = tally_at(tmp_path / "area", quota)
    tally.recount()
    hold = tally.hold(quota, write(tally.root / "t", 0).stat().st_ino, 0, resumed=False)
    hold.grow(90)
    hold.truncated(10)
    assert tally.usage() == Usage(10, 1)
    assert hold.grow(100) is None


def test_df_shows_the_quota_and_keeps_the_host_figures_it_does_not_set(tmp_path: Path) -> None:
    host = os.statvfs(tmp_path)
    shown = statvfs_within(host, limit(max_bytes=GIB, max_files=10), Usage(GIB // 4 + 1, 3))
    assert (shown.f_bsize, shown.f_frsize) == (STATVFS_BLOCK, STATVFS_BLOCK)
    assert shown.f_blocks * shown.f_frsize == GIB
    assert shown.f_bfree == shown.f_bavail == (GIB - GIB // 4) // STATVFS_BLOCK - 1
    assert (shown.f_files, shown.f_ffree, shown.f_favail) == (10, 7, 7)
    assert shown.f_namemax == host.f_namemax
    over = statvfs_within(host, limit(max_files=2), Usage(GIB, 3))
    assert (over.f_blocks, over.f_bsize) == (host.f_blocks, host.f_bsize)
    assert (over.f_files, over.f_ffree) == (2, 0)


def test_the_metrics_show_each_counted_account_and_its_limits(tmp_path: Path) -> None:
    tallies = AccountTallies()
    figures = QuotaFigures(registry := CollectorRegistry())
    figures.read_from(tallies.figures)
    assert list(registry.collect()) == []
    root = tmp_path / "partner"
    write(root / "a", 5)
    tallies.of(root, "partner", limit(max_files=4)).recount()
    assert registry.get_sample_value("ssftp_quota_used_bytes", {"account": "partner"}) == 5
    assert registry.get_sample_value("ssftp_quota_used_files", {"account": "partner"}) == 1
    assert registry.get_sample_value("ssftp_quota_max_files", {"account": "partner"}) == 4
    assert registry.get_sample_value("ssftp_quota_max_bytes", {"account": "partner"}) is None
    tallies.forget(root)
    assert list(registry.collect()) == []
