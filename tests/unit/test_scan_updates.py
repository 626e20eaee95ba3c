"""One signature update against a fake clamd that reloads on cue: the RELOAD is sent only when
the generation on disk is not the loaded one, the update waits for clamd to *answer* with the
new generation, and a clamd that never does (a file it cannot load) is a one-line failure.
freshclam itself runs in the integration tests; here there is nothing for it to fetch, or a
stand-in script exits as freshclam does."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ssftp.config.schema import SignatureSettings
from ssftp.errors import SignatureUpdateError
from ssftp.scan import freshclam
from ssftp.scan.database import UpdateTarget, seed
from ssftp.scan.signatures import (
    GENERATION_FILE,
    GENERATION_MARKER,
    GENERATION_PREFIX,
    Signatures,
)
from ssftp.scan.updates import UpdateResult, update_signatures
from testkit.fake_clamd import VERSION, FakeClamd, Request, like_clamd

NOTHING_TO_FETCH = SignatureSettings.model_validate({"official": False})


class ReloadingClamd:
    """Answers the generation probe with the generation it has loaded, and loads what is on
    disk on RELOAD (unless ``loads`` is off: a clamd keeping its old engine)."""

    def __init__(self, database: Path, *, loads: bool = True) -> None:
        self.database = database
        self.loads = loads
        self.reloads = 0
        self.loaded = self.on_disk()

    def on_disk(self) -> str:
        line = (self.database / GENERATION_FILE).read_text()
        return line.split(":")[2].strip().removeprefix(GENERATION_PREFIX)

    def __call__(self, request: Request) -> bytes:
        if request.command == "RELOAD":
            self.reloads += 1
            if self.loads:
                self.loaded = self.on_disk()
            return b"RELOADING"
        if request.command == "INSTREAM" and request.data == GENERATION_MARKER:
            return f"stream: {GENERATION_PREFIX}{self.loaded}.UNOFFICIAL FOUND".encode()
        answer = like_clamd(request)
        assert isinstance(answer, bytes)
        return answer


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return seed(tmp_path / "db", official=False)


def target(fake: FakeClamd, database: Path) -> UpdateTarget:
    return UpdateTarget(fake.address, database, database.parent / "run")


def test_a_new_file_is_reloaded_and_the_update_waits_for_its_generation(fake_clamd, database):
    clamd = ReloadingClamd(database)
    fake_clamd.answer = clamd
    old = clamd.loaded
    (database / "site.ndb").write_text("Site.Test:0:*:6869\n")  # as freshclam would leave it

    result = update_signatures(NOTHING_TO_FETCH, target(fake_clamd, database))

    assert clamd.reloads == 1
    assert result.changed and result.failure is None and result.warnings == ()
    assert result.before.generation == old
    assert result.after.generation == clamd.loaded != old
    assert result.describe() == f"{result.before} -> {result.after}"
    assert str(result.after) == f"{VERSION.split('/')[0]}/27000+{clamd.loaded}"


def test_nothing_changed_sends_no_reload(fake_clamd, database):
    clamd = ReloadingClamd(database)
    fake_clamd.answer = clamd

    result = update_signatures(NOTHING_TO_FETCH, target(fake_clamd, database))

    assert clamd.reloads == 0
    assert not result.changed and result.failure is None
    assert result.describe().startswith("unchanged: ")


def test_a_clamd_that_keeps_its_old_signatures_is_a_one_line_failure(fake_clamd, database):
    """clamd refuses a database it cannot load and keeps the previous engine: the update says
    so (after the bounded wait) and names what clamd still scans with."""
    clamd = ReloadingClamd(database, loads=False)
    fake_clamd.answer = clamd
    (database / "site.ndb").write_text("Site.Test:0:*:6869\n")

    result = update_signatures(NOTHING_TO_FETCH, target(fake_clamd, database),
                               reload_timeout=0.3, poll_seconds=0.05)

    assert clamd.reloads == 1
    assert not result.changed
    assert result.failure is not None and "\n" not in result.failure
    assert "did not load the new signatures within 0.3 s" in result.failure
    assert result.after.generation in result.failure


def test_a_clamd_that_does_not_answer_is_an_error_before_anything_runs(tmp_path, database):
    nowhere = FakeClamd()
    nowhere.stop()
    with pytest.raises(SignatureUpdateError, match="does not answer"):
        update_signatures(NOTHING_TO_FETCH, target(nowhere, database))


def test_no_database_directory_is_an_error(fake_clamd, tmp_path):
    with pytest.raises(SignatureUpdateError, match="no signature database directory"):
        update_signatures(NOTHING_TO_FETCH, target(fake_clamd, tmp_path / "missing"))


def test_one_update_at_a_time(fake_clamd, database):
    """A second update while one runs says so rather than run freshclam on the same files."""
    entered, release = threading.Event(), threading.Event()
    clamd = ReloadingClamd(database)

    def slow(request: Request) -> bytes:
        if request.command == "VERSION":
            entered.set()
            release.wait(30)
        return clamd(request)

    fake_clamd.answer = slow
    first = threading.Thread(target=update_signatures,
                             args=(NOTHING_TO_FETCH, target(fake_clamd, database)))
    first.start()
    try:
        assert entered.wait(30)
        with pytest.raises(SignatureUpdateError, match="another signature update"):
            update_signatures(NOTHING_TO_FETCH, target(fake_clamd, database))
    finally:
        release.set()
        first.join(30)


def test_the_result_says_before_and_after():
    before = Signatures("ClamAV 1.4.6", generation="aaa")
    after = Signatures("ClamAV 1.4.6", generation="bbb")
    assert UpdateResult(before, after).describe() == "ClamAV 1.4.6/+aaa -> ClamAV 1.4.6/+bbb"
    assert UpdateResult(before, before).describe() == "unchanged: ClamAV 1.4.6/+aaa"


def fake_freshclam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str,
                   status: int) -> None:
    script = tmp_path / "freshclam"
    script.write_text(f"#!/bin/sh\necho '{said}'\nexit {status}\n")
    os.chmod(script, 0o755)
    monkeypatch.setattr(freshclam, "FRESHCLAM_BINARIES", (str(script),))


OFFICIAL = SignatureSettings()


def test_the_official_download_failing_is_a_warning(fake_clamd, database, tmp_path,
                                                    monkeypatch):
    fake_clamd.answer = ReloadingClamd(database)
    fake_freshclam(tmp_path, monkeypatch, "ERROR: Update failed for database: daily", 11)

    result = update_signatures(OFFICIAL, target(fake_clamd, database))

    assert result.failure is None
    assert result.warnings == ("official signatures not updated: Update failed for database: "
                               "daily",)


@pytest.mark.parametrize(("said", "status", "reason"), [
    ("ERROR: Initialization error!", 2, "Initialization error!"),
    ("ERROR: Failed to save freshclam.dat!", 10, "Failed to save freshclam.dat!"),
])
def test_freshclam_failing_on_this_machine_is_a_failure(fake_clamd, database, tmp_path,
                                                        monkeypatch, said, status, reason):
    """Its user, its database directory: no network would make it work."""
    fake_clamd.answer = ReloadingClamd(database)
    fake_freshclam(tmp_path, monkeypatch, said, status)

    result = update_signatures(OFFICIAL, target(fake_clamd, database))

    assert result.failure == f"official signatures not updated: {reason}"
    assert result.warnings == ()


def test_no_freshclam_is_a_failure(fake_clamd, database, tmp_path, monkeypatch):
    fake_clamd.answer = ReloadingClamd(database)
    monkeypatch.setattr(freshclam, "FRESHCLAM_BINARIES", (str(tmp_path / "none"),))

    result = update_signatures(OFFICIAL, target(fake_clamd, database))

    assert result.failure == ("official signatures not updated: freshclam is not installed "
                              "(Debian package clamav-freshclam)")


def test_a_directory_that_cannot_be_written_is_an_error(fake_clamd, database, tmp_path):
    fake_clamd.answer = ReloadingClamd(database)
    blocked = tmp_path / "run-is-a-file"
    blocked.write_text("")
    with pytest.raises(SignatureUpdateError, match=r"not updated: .*run-is-a-file"):
        update_signatures(NOTHING_TO_FETCH, UpdateTarget(fake_clamd.address, database, blocked))
