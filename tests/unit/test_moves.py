"""Atomic moves between areas, on one filesystem and across two (disk and tmpfs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ssftp.moves import move_atomically, publish, temp_path_beside
from testkit.files import make_random_file, sha256_file

SHM = Path("/dev/shm")


def test_same_filesystem_move_keeps_inode_and_makes_dirs(tmp_path):
    (tmp_path / "staging").mkdir()
    source = make_random_file(tmp_path / "staging" / "a b: ü.bin", 4096)
    inode = source.stat().st_ino
    target = tmp_path / "clean" / "nested" / "deeper" / source.name
    move_atomically(source, target)
    assert not source.exists()
    assert target.stat().st_ino == inode


def test_move_replaces_an_existing_target(tmp_path):
    (tmp_path / "new").write_text("new")
    (tmp_path / "old").write_text("old")
    move_atomically(tmp_path / "new", tmp_path / "old")
    assert (tmp_path / "old").read_text() == "new"


@pytest.fixture
def other_filesystem(tmp_path):
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test's temp dir")
    directory = SHM / f"ssftp-test-{os.getpid()}-{tmp_path.name}"
    directory.mkdir()
    yield directory
    for path in sorted(directory.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    directory.rmdir()


def test_cross_filesystem_move_copies_then_removes(tmp_path, other_filesystem):
    source = make_random_file(tmp_path / "big.bin", 5 * 1024 * 1024 + 3)
    digest = sha256_file(source)
    target = other_filesystem / "clean" / "big.bin"
    move_atomically(source, target)
    assert not source.exists()
    assert sha256_file(target) == digest
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]  # no temp left behind


def test_failed_cross_filesystem_copy_keeps_source_and_leaves_no_temp(tmp_path, other_filesystem):
    source = make_random_file(tmp_path / "keep.bin", 1024)
    blocked = other_filesystem / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    if os.access(blocked, os.W_OK):  # root ignores directory permissions
        blocked.chmod(0o700)
        (blocked / "keep.bin").mkdir()  # a directory in the way makes the final rename fail
        (blocked / "keep.bin" / "x").write_text("occupied")
    with pytest.raises(OSError):
        move_atomically(source, blocked / "keep.bin")
    blocked.chmod(0o700)
    assert source.exists()
    assert not [p for p in blocked.iterdir() if p.name.startswith(".ssftp-tmp-")]


@pytest.mark.parametrize("replace", [True, False])
def test_publish_by_directory_descriptor_stays_in_that_directory(tmp_path, replace):
    """The upload's directory is swapped for a symlink to another writer's directory, which
    holds a file under the very temp name: by name the rename would publish that file there;
    through the descriptor it publishes ours, in the directory that was checked."""
    checked, outside = tmp_path / "checked", tmp_path / "outside"
    checked.mkdir()
    outside.mkdir()
    temp = temp_path_beside(checked / "final.txt")
    temp.write_bytes(b"ours")
    (outside / temp.name).write_bytes(b"planted")
    directory = os.open(checked, os.O_RDONLY | os.O_DIRECTORY)
    try:
        checked.rename(tmp_path / "moved")
        checked.symlink_to(outside, target_is_directory=True)
        publish(Path(temp.name), Path("final.txt"), replace=replace, dir_fd=directory)
    finally:
        os.close(directory)
    assert sorted(os.listdir(tmp_path / "moved")) == ["final.txt"]
    assert (tmp_path / "moved" / "final.txt").read_bytes() == b"ours"
    assert os.listdir(outside) == [temp.name]


def test_a_failed_publish_by_descriptor_removes_the_temp_file_there(tmp_path):
    (tmp_path / "final.txt").write_bytes(b"older")
    temp = temp_path_beside(tmp_path / "final.txt")
    temp.write_bytes(b"newer")
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            publish(Path(temp.name), Path("final.txt"), replace=False, dir_fd=directory)
    finally:
        os.close(directory)
    assert os.listdir(tmp_path) == ["final.txt"]
    assert (tmp_path / "final.txt").read_bytes() == b"older"
