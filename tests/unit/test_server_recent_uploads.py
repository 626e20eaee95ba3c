"""server.recent_uploads: an upload is remembered for its account for a while, and the memory is
bounded."""

from __future__ import annotations

from pathlib import Path

from server.recent_uploads import RecentUploads

# -- the registry itself -------------------------------------------------------------------


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def test_recent_upload_is_remembered_for_its_account_and_a_while(tmp_path):
    now = [0.0]
    recent = RecentUploads(seconds=60, limit=4, clock=lambda: now[0])
    path = tmp_path / "up.csv"
    path.write_bytes(b"x")
    recent.remember("partner-a", path, _identity(path))
    assert recent.identity("partner-a", path) == _identity(path)
    assert recent.identity("partner-b", path) is None  # another account
    now[0] = 60.0
    assert recent.identity("partner-a", path) is None  # too late


def test_recent_uploads_are_bounded(tmp_path):
    recent = RecentUploads(seconds=60, limit=2)
    paths = [tmp_path / f"{n}.csv" for n in range(3)]
    for path in paths:
        path.write_bytes(b"x")
        recent.remember("partner-a", path, _identity(path))
    assert recent.identity("partner-a", paths[0]) is None  # oldest dropped
    assert recent.identity("partner-a", paths[2]) == _identity(paths[2])
