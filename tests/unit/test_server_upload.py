"""server.upload: what the close of one upload does with its bytes, on the lifecycle object
itself (a temp directory, no SSH client): publish, keep for a resume, or discard, then the
verdict. The same through real clients: test_uploads_in_progress, test_verdict_on_close."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from server.upload import CUT_OFF, Upload
from server.verdict_wait import Destinations, VerdictWatch
from ssftp.errors import UploadFailedError
from ssftp.file_stamp import FileStamp
from ssftp.published import published_whole
from testkit.uploads import USERNAME, begin_upload, partials, room_for, upload_context


def visible(root: Path) -> list[str]:
    """The names a listing or the scanner would see in ``root`` (no temp file, no slot)."""
    return sorted(name for name in os.listdir(root) if not name.startswith(".ssftp"))


def hidden(root: Path) -> list[str]:
    """ssftp's own names left in ``root``: temp files, and the partials' directory."""
    return sorted(name for name in os.listdir(root) if name.startswith(".ssftp"))


async def close(upload: Upload) -> tuple[str | None, list[str | None]]:
    """What the close answers, and what it told the transfer log."""
    finished: list[str | None] = []
    return await upload.close(finished.append), finished


# -- publish -------------------------------------------------------------------------------


async def test_a_clean_close_publishes_the_upload_and_remembers_it(tmp_path: Path) -> None:
    with upload_context() as context:
        upload = begin_upload(context, tmp_path, "/up.bin")
        upload.writer.write(0, b"complete")
        assert visible(tmp_path) == []  # nothing under the final name before the close
        assert await close(upload) == (None, [None])
        published = tmp_path / "up.bin"
        assert published.read_bytes() == b"complete"
        info = published.stat()
        assert context.recent.identity(USERNAME, published) == (info.st_dev, info.st_ino)
        # The staging watcher of this process may scan it at once (ssftp.published).
        assert FileStamp.of(info) in published_whole()
    assert hidden(tmp_path) == [] and partials(tmp_path) == {}


async def test_a_name_that_appeared_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    with upload_context() as context:
        upload = begin_upload(context, tmp_path, "/up.bin", replace=False)
        upload.writer.write(0, b"mine")
        (tmp_path / "up.bin").write_bytes(b"another writer's")
        finished: list[str | None] = []
        with pytest.raises(FileExistsError):
            await upload.close(finished.append)
    assert finished == ["target appeared meanwhile; not overwritten"]
    assert (tmp_path / "up.bin").read_bytes() == b"another writer's"
    assert hidden(tmp_path) == []


# -- discard: the client saw an error ------------------------------------------------------


def _no_space(fd: int, data: object, offset: int) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _short(fd: int, data: object, offset: int) -> int:
    return 0


def _io_error(fd: int) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def _fail_write(call: Callable[..., int]) -> Callable[[Upload, pytest.MonkeyPatch], None]:
    def fail(upload: Upload, monkeypatch: pytest.MonkeyPatch) -> None:
        with monkeypatch.context() as patch, pytest.raises(OSError):
            patch.setattr(os, "pwrite", call)
            upload.writer.write(6, b"lost")
    return fail


def _fail_fsync(upload: Upload, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch, pytest.raises(OSError):
        patch.setattr(os, "fsync", _io_error)
        upload.writer.fsync()


def _refused_stat(upload: Upload, monkeypatch: pytest.MonkeyPatch) -> None:
    upload.writer.void("stat of the file was refused or failed")


FAILURES = {
    "full disk": (_fail_write(_no_space), "write failed: No space left on device"),
    "short write": (_fail_write(_short), "write failed: short write (4 bytes not written)"),
    "failed fsync": (_fail_fsync, "fsync failed: Input/output error"),
    "refused stat": (_refused_stat, "stat of the file was refused or failed"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failed_upload_is_never_published(tmp_path: Path, failure: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients close the handle after a failed request as after a good one: the close must
    answer that nothing was published, and leave nothing behind, not even for a resume."""
    fail, reason = FAILURES[failure]
    with upload_context() as context:
        upload = begin_upload(context, tmp_path, "/up.bin")
        upload.writer.write(0, b"before")
        fail(upload, monkeypatch)
        upload.writer.write(6, b" after")  # the client goes on as if nothing happened
        finished: list[str | None] = []
        with pytest.raises(UploadFailedError, match=f"^upload not published: {re.escape(reason)}$"):
            await upload.close(finished.append)
        assert context.recent.identity(USERNAME, tmp_path / "up.bin") is None
    assert finished == [f"upload not published: {reason}"]
    assert visible(tmp_path) == [] and hidden(tmp_path) == [] and partials(tmp_path) == {}


async def test_a_failed_upload_cut_off_afterwards_is_discarded_not_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a failed write left is of unknown content: no resume may build on it."""
    with upload_context(client_left=lambda: True) as context:
        upload = begin_upload(context, tmp_path, "/up.bin")
        upload.writer.write(0, b"before")
        _fail_write(_no_space)(upload, monkeypatch)
        assert await close(upload) == (None, [CUT_OFF])
    assert visible(tmp_path) == [] and hidden(tmp_path) == []


# -- keep for a resume: the client is gone -------------------------------------------------


async def test_a_cut_off_upload_is_kept_for_resume_not_published(tmp_path: Path) -> None:
    with upload_context(client_left=lambda: True) as context:
        upload = begin_upload(context, tmp_path, "/up.bin")
        upload.writer.write(0, b"0123456789")
        assert await close(upload) == (None, [f"{CUT_OFF}; kept for a resume"])
        assert context.recent.identity(USERNAME, tmp_path / "up.bin") is None
    assert visible(tmp_path) == []
    assert list(partials(tmp_path).values()) == [b"0123456789"]

    with upload_context() as context:  # the same account comes back and resumes
        resumed = begin_upload(context, tmp_path, "/up.bin", resume=True)
        assert resumed.writer.resumed_at == 10
        resumed.writer.write(10, b"abc")
        assert await close(resumed) == (None, [None])
    assert (tmp_path / "up.bin").read_bytes() == b"0123456789abc"
    assert partials(tmp_path) == {}


async def test_a_cut_off_upload_with_nothing_received_leaves_nothing(tmp_path: Path) -> None:
    with upload_context(client_left=lambda: True) as context:
        assert await close(begin_upload(context, tmp_path, "/up.bin")) == (None, [CUT_OFF])
    assert visible(tmp_path) == [] and hidden(tmp_path) == []


# -- the verdict ---------------------------------------------------------------------------


def data_root(tmp_path: Path) -> tuple[Path, Destinations]:
    """An account's home in staging, and the clean and quarantine areas beside it."""
    root = tmp_path.resolve()  # as the kernel names the places the file goes
    home = root / "staging" / "partner-a"
    for directory in (home, root / "clean", root / "quarantine"):
        directory.mkdir(parents=True)
    return home, Destinations(root / "clean", root / "quarantine")


def quarantine(published: Path, areas: Destinations, signature: str) -> None:
    """What the scanner does with an infected file: its record first, then the file."""
    target = areas.quarantine / published.name
    target.with_name(f"{published.name}.verdict.json").write_text(json.dumps({
        "destination": f"quarantine/{published.name}", "size": published.stat().st_size,
        "verdict": "infected", "signature": signature}))
    published.rename(target)


async def test_the_close_waits_for_the_verdict_and_tells_it(tmp_path: Path) -> None:
    home, areas = data_root(tmp_path)
    budget = room_for(4)
    with upload_context(verdicts=VerdictWatch(areas, lambda: 30.0), budget=budget) as context:
        upload = begin_upload(context, home, "/up.bin")
        upload.writer.write(0, b"X5O!P%@AP")
        closing = asyncio.ensure_future(close(upload))
        while not (home / "up.bin").exists():
            await asyncio.sleep(0.001)
        assert not closing.done()  # published, and waiting for the verdict
        quarantine(home / "up.bin", areas, "Eicar-Test-Signature")
        message, finished = await asyncio.wait_for(closing, 10)
    assert message == "infected: Eicar-Test-Signature"
    assert finished == [None]  # the transfer itself went well
    # The wait held a slot of the budget, and gave it back.
    assert [budget.take_handle() for _ in range(5)] == [True] * 4 + [False]


async def test_a_clean_verdict_answers_ok(tmp_path: Path) -> None:
    home, areas = data_root(tmp_path)
    with upload_context(verdicts=VerdictWatch(areas, lambda: 30.0)) as context:
        upload = begin_upload(context, home, "/up.bin")
        closing = asyncio.ensure_future(close(upload))
        while not (home / "up.bin").exists():
            await asyncio.sleep(0.001)
        (home / "up.bin").rename(areas.clean / "up.bin")
        assert await asyncio.wait_for(closing, 10) == (None, [None])


@pytest.mark.parametrize("case", ["no room for the wait", "a client temp name",
                                  "verdictOnClose off", "the client leaves"])
async def test_the_close_answers_at_once_when_it_cannot_or_need_not_wait(
        tmp_path: Path, case: str) -> None:
    """Nothing scans here: a close that waited would hang for its 30 s."""
    home, areas = data_root(tmp_path)
    left = False
    budget = room_for(0 if case == "no room for the wait" else 4)
    verdicts = VerdictWatch(areas, lambda: None if case == "verdictOnClose off" else 30.0)
    name = "/up.bin.filepart" if case == "a client temp name" else "/up.bin"
    descriptors = len(os.listdir("/proc/self/fd"))
    with upload_context(verdicts=verdicts, budget=budget, client_left=lambda: left) as context:
        upload = begin_upload(context, home, name)
        closing = asyncio.ensure_future(close(upload))
        if case == "the client leaves":
            while not (home / "up.bin").exists():
                await asyncio.sleep(0.001)
            left = True
        assert await asyncio.wait_for(closing, 5) == (None, [None])
    assert (home / name.lstrip("/")).exists()
    assert len(os.listdir("/proc/self/fd")) == descriptors  # the file is not followed on
