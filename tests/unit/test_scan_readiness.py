"""ssftp.scan.readiness on real files: a file is ready once it has stopped changing, or at once
when the server of this process published it whole (ssftp.published)."""

from __future__ import annotations

import os
from pathlib import Path

from ssftp.file_stamp import FileStamp
from ssftp.published import PublishedWhole
from ssftp.scan.readiness import ReadinessTracker

# --- readiness ------------------------------------------------------------------------------


def test_a_stable_file_is_ready_once(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"complete")
    tracker = ReadinessTracker(stable_seconds=1.0)
    tracker.saw(path, now=100.0)
    assert len(tracker) == 1
    assert tracker.ready(now=100.9) == []
    assert tracker.ready(now=101.0) == [path]
    assert tracker.ready(now=200.0) == []
    assert len(tracker) == 0


def test_a_growing_file_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "growing.bin"
    path.write_bytes(b"part 1")
    tracker = ReadinessTracker(stable_seconds=1.0)
    tracker.saw(path, now=0.0)
    with path.open("ab") as handle:
        handle.write(b" and part 2")
    assert tracker.ready(now=1.0) == []  # changed: stable again only from now on
    assert tracker.ready(now=1.9) == []
    assert tracker.ready(now=2.0) == [path]


def test_a_new_event_restarts_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    tracker = ReadinessTracker(stable_seconds=1.0)
    tracker.saw(path, now=0.0)
    tracker.saw(path, now=0.8)
    assert tracker.ready(now=1.0) == []
    assert tracker.ready(now=1.8) == [path]


def test_vanished_forgotten_and_non_regular_paths_are_dropped(tmp_path: Path) -> None:
    tracker = ReadinessTracker(stable_seconds=0.5)
    vanishing = tmp_path / "vanishing"
    vanishing.write_bytes(b"x")
    forgotten = tmp_path / "forgotten"
    forgotten.write_bytes(b"y")
    tracker.saw(vanishing, now=0.0)
    tracker.saw(forgotten, now=0.0)
    vanishing.unlink()
    tracker.forget(forgotten)
    assert tracker.ready(now=10.0) == []
    assert len(tracker) == 0

    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    for path in (tmp_path / "never-existed", tmp_path / "dir", tmp_path / "link"):
        tracker.saw(path, now=0.0)
    assert len(tracker) == 0


# --- files published whole by this process --------------------------------------------------


def test_a_file_published_whole_is_ready_at_once(tmp_path: Path) -> None:
    """The SFTP server's upload, renamed into place after the close: no wait to settle (it
    was half a second of every upload's way to clean/)."""
    published, other = tmp_path / "upload.bin", tmp_path / "copied.bin"
    published.write_bytes(b"uploaded")
    other.write_bytes(b"in place")
    registry = PublishedWhole()
    registry.remember(FileStamp.of(published.stat()))
    tracker = ReadinessTracker(stable_seconds=1.0, whole=registry.__contains__)
    tracker.saw(published, now=0.0)
    tracker.saw(other, now=0.0)
    assert tracker.ready(now=0.0) == [published]
    assert tracker.ready(now=1.0) == [other]  # any other file waits as before


def test_a_published_file_changed_since_waits_like_any_other(tmp_path: Path) -> None:
    """A SETSTAT of its times (or another writer) after the publish: no longer the file the
    server published whole."""
    path = tmp_path / "upload.bin"
    path.write_bytes(b"uploaded")
    registry = PublishedWhole()
    registry.remember(FileStamp.of(path.stat()))
    tracker = ReadinessTracker(stable_seconds=1.0, whole=registry.__contains__)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    tracker.saw(path, now=0.0)
    assert tracker.ready(now=0.5) == []
    assert tracker.ready(now=1.0) == [path]


def test_a_published_file_changed_before_it_was_ready_waits_again(tmp_path: Path) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(b"uploaded")
    registry = PublishedWhole()
    registry.remember(FileStamp.of(path.stat()))
    tracker = ReadinessTracker(stable_seconds=1.0, whole=registry.__contains__)
    tracker.saw(path, now=0.0)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert tracker.ready(now=0.0) == []  # changed since it was seen: stable from now on
    assert tracker.ready(now=1.0) == [path]


def _tracker_of_published(path: Path, *, stable_seconds: float,
                          rename_grace_seconds: float) -> ReadinessTracker:
    """A tracker for which ``path``, written here, was published whole."""
    path.write_bytes(b"uploaded")
    registry = PublishedWhole()
    registry.remember(FileStamp.of(path.stat()))
    return ReadinessTracker(stable_seconds, whole=registry.__contains__,
                            rename_grace_seconds=rename_grace_seconds)


def test_a_file_published_whole_waits_the_rename_grace_then_is_scanned_under_its_new_name(
        tmp_path: Path) -> None:
    """A client that uploads to a name of its own and renames after the close (JSch,
    ssh2-sftp-client): the published file waits the grace, so it is not claimed under the
    name the client is about to change; at its new name it is the same file (same stamp),
    published whole, and waits only the grace, not ``stable_seconds``."""
    temp = tmp_path / "report.csv.tmp123"
    tracker = _tracker_of_published(temp, stable_seconds=1.0, rename_grace_seconds=0.25)
    tracker.saw(temp, now=0.0)
    assert tracker.ready(now=0.125) == []  # the client's rename is on its way
    final = temp.with_name("report.csv")
    temp.rename(final)
    tracker.forget(temp)
    tracker.saw(final, now=0.125)
    assert tracker.ready(now=0.25) == []
    assert tracker.ready(now=0.375) == [final]
    assert len(tracker) == 0


def test_the_rename_grace_is_never_longer_than_stable_seconds(tmp_path: Path) -> None:
    """A file published whole never waits longer than a file of unknown origin."""
    path = tmp_path / "upload.bin"
    tracker = _tracker_of_published(path, stable_seconds=0.25, rename_grace_seconds=5.0)
    tracker.saw(path, now=0.0)
    assert tracker.ready(now=0.125) == []
    assert tracker.ready(now=0.25) == [path]


def test_the_registry_forgets_after_its_time_and_beyond_its_limit() -> None:
    now = [0.0]
    registry = PublishedWhole(seconds=10.0, limit=2, clock=lambda: now[0])
    stamps = [FileStamp(inode, 8, 1) for inode in (1, 2, 3)]
    for stamp in stamps:
        registry.remember(stamp)
    assert [stamp in registry for stamp in stamps] == [False, True, True]  # the oldest went
    now[0] = 10.0
    assert stamps[2] not in registry
