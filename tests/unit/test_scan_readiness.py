"""ssftp.scan.readiness on real files: a file is ready once it has stopped changing."""

from __future__ import annotations

from pathlib import Path

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
