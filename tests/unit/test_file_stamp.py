"""ssftp.file_stamp: a file's hash is taken only of the file its stamp describes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ssftp.file_stamp import FileStamp, sha256_if_unchanged


def test_sha256_only_of_the_file_the_stamp_describes(tmp_path: Path):
    """What a transfer names a moved file by: its bytes as sent or received, never a file put
    in its place meanwhile (another inode, other bytes, a link)."""
    path = tmp_path / "moved.bin"
    path.write_bytes(b"12345")
    stamp = FileStamp.of(path.stat())
    assert sha256_if_unchanged(path, stamp) == hashlib.sha256(b"12345").hexdigest()
    path.write_bytes(b"1234")
    assert sha256_if_unchanged(path, stamp) is None
    path.unlink()
    assert sha256_if_unchanged(path, stamp) is None
    (tmp_path / "other").write_bytes(b"12345")
    path.symlink_to(tmp_path / "other")
    assert sha256_if_unchanged(path, FileStamp.of((tmp_path / "other").stat())) is None
