"""server.upload_writer: an upload is published only inside its directory, also when the
directory is swapped out; a resume continues only at the exact offset; an interrupted upload
that failed a write, or is empty, is not kept."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from server.jail import Jail
from server.upload_writer import UploadWriter, partial_path
from ssftp.errors import Refused, UploadFailedError
from ssftp.layout import (
    PARTIALS_DIR,
)


@pytest.mark.parametrize("replace", [True, False])
def test_an_upload_is_never_published_through_a_directory_swapped_out(tmp_path, replace):
    """Between the upload's open and its close another writer swaps its directory for a
    symlink to a directory outside that holds a file under the upload's temp name: the close
    must not publish that file (outside, as if it were the upload), and must say it failed."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "dir").mkdir(parents=True)
    outside.mkdir()
    writer = UploadWriter(root / "dir" / "up.txt", Jail(root), replace=replace, append=False,
                          durable=True)
    writer.write(0, b"uploaded")
    (outside / writer.temp.name).write_bytes(b"planted")
    (root / "dir").rename(root / "parked")
    (root / "dir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UploadFailedError, match="outside the home directory"):
        writer.commit()
    assert os.listdir(outside) == [writer.temp.name]
    assert (outside / writer.temp.name).read_bytes() == b"planted"
    assert not (root / "parked" / "up.txt").exists()


# -- the writer's resume rules (plain, on a temp directory) --------------------------------


def writer_for(root: Path, name: str, *, resume: bool) -> UploadWriter:
    jail = Jail(root)
    return UploadWriter(root / name, jail, replace=False, append=False, durable=False,
                        partial=partial_path(jail, "partner-a", f"/{name}"), resume=resume)


def test_a_resume_continues_only_at_the_exact_offset(tmp_path: Path) -> None:
    first = writer_for(tmp_path, "up.bin", resume=True)  # nothing to resume: a new upload
    assert first.resumed_at is None
    first.write(0, b"0123456789")
    assert first.suspend()
    assert not (tmp_path / "up.bin").exists()

    second = writer_for(tmp_path, "up.bin", resume=True)
    assert second.resumed_at == 10
    for offset in (0, 9, 11):
        with pytest.raises(Refused, match=f"resumes an interrupted one of 10 bytes.*"
                                          f"write at byte {offset} is not a continuation"):
            second.write(offset, b"x")
    with pytest.raises(UploadFailedError, match="write at byte 0 was refused"):
        second.commit()
    assert not (tmp_path / "up.bin").exists()

    third = writer_for(tmp_path, "up.bin", resume=True)  # the refusal changed nothing
    assert third.resumed_at == 10
    third.write(10, b"abc")
    third.write(13, b"def")
    third.commit()
    assert (tmp_path / "up.bin").read_bytes() == b"0123456789abcdef"
    assert os.listdir(tmp_path / PARTIALS_DIR) == []


def test_a_failed_write_discards_the_interrupted_upload(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, "up.bin", resume=False)
    writer.write(0, b"good")
    writer.failure = "write failed: No space left on device"  # as _remembering notes it
    assert not writer.suspend()
    assert list(tmp_path.iterdir()) == []


def test_an_empty_interrupted_upload_is_not_kept(tmp_path: Path) -> None:
    assert not writer_for(tmp_path, "up.bin", resume=False).suspend()
    assert list(tmp_path.iterdir()) == []


# -- writes behind, gathered ------------------------------------------------------------------


def gathering_writer(root: Path, idle: list[Callable[[], object]]) -> UploadWriter:
    return UploadWriter(root / "up.bin", Jail(root), replace=False, append=False,
                        durable=False, when_idle=idle.append)


def test_writes_behind_are_gathered_into_one_pwritev(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    idle: list[Callable[[], object]] = []
    writer, sizes = gathering_writer(tmp_path, idle), []
    pwritev = os.pwritev
    monkeypatch.setattr(os, "pwritev", lambda fd, buffers, offset: (
        sizes.append(len(buffers)), pwritev(fd, buffers, offset))[1])
    for index in range(4):
        writer.write_behind(index * 3, b"abc")
    assert writer.temp.stat().st_size == 0 and len(idle) == 1
    idle.pop()()  # the session's thread has nothing else to do
    assert sizes == [4] and writer.temp.read_bytes() == b"abc" * 4
    writer.commit()
    assert (tmp_path / "up.bin").read_bytes() == b"abc" * 4


def test_any_use_of_the_file_writes_what_was_gathered_first(tmp_path: Path) -> None:
    """The client's own STAT, FSETSTAT or READ of its upload, and the publish, see every
    byte it was answered for."""
    idle: list[Callable[[], object]] = []
    writer = gathering_writer(tmp_path, idle)
    writer.write_behind(0, b"abc")
    writer.write_behind(3, b"def")
    assert os.fstat(writer.fd).st_size == 6
    writer.write_behind(10, b"x")  # not a continuation: what was gathered goes first
    writer.write_behind(11, b"y")
    assert writer.read(0, 12) == b"abcdef\0\0\0\0xy"
    writer.write_behind(12, b"z")
    writer.commit()
    assert (tmp_path / "up.bin").read_bytes() == b"abcdef\0\0\0\0xyz"


def test_a_gathered_write_that_fails_voids_the_upload(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk is caused by a patched pwritev here (the real one on a full tmpfs is in
    test_server_hardening): the close publishes nothing and leaves nothing."""
    def no_space(fd: int, buffers: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    idle: list[Callable[[], object]] = []
    writer = gathering_writer(tmp_path, idle)
    writer.write_behind(0, b"abc")
    monkeypatch.setattr(os, "pwritev", no_space)
    idle.pop()()
    assert writer.failure == "write failed: No space left on device"
    with pytest.raises(UploadFailedError, match="No space left on device"):
        writer.commit()
    assert os.listdir(tmp_path) == []
