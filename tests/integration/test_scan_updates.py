"""Signature updates with the real freshclam and a real clamd, offline: a ``file://`` custom URL
brings a new signature, clamd reloads and finds what it describes; the official download
failing is a warning; a missing or broken signature file never costs clamd the signatures it
has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ssftp.config.schema import SignatureSettings
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import UpdateTarget, seed
from ssftp.scan.updates import update_signatures
from ssftp.scan.verdict import VerdictKind
from testkit.files import EICAR
from testkit.openssh_server import free_port

# Harmless bytes that only the custom signature below describes.
CONTENT = b"ssftp custom signature test content: harmless\n"
SIGNATURE = f"Ssftp.Test.Custom:0:*:{CONTENT.hex()}\n"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return seed(tmp_path / "db", official=False)


@pytest.fixture
def clamd(tmp_path: Path, database: Path) -> Iterator[ClamdDaemon]:
    """A clamd of this test's own: each test changes what it loads."""
    daemon = ClamdDaemon.start(tmp_path / "clamd", database=database)
    yield daemon
    daemon.stop()


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """Where the site publishes its own signatures (the ``file://`` mirror)."""
    directory = tmp_path / "published"
    directory.mkdir()
    return directory


def custom(*paths: Path, **more: object) -> SignatureSettings:
    return SignatureSettings.model_validate(
        {"official": False, "customUrls": [path.as_uri() for path in paths], **more})


def scan(clamd: ClamdDaemon, tmp_path: Path, content: bytes) -> VerdictKind:
    sample = tmp_path / "sample"
    sample.write_bytes(content)
    return ClamdClient(clamd.address, timeout=30).scan(sample).kind


def update(clamd: ClamdDaemon, database: Path, settings: SignatureSettings,
           **timeouts: float):
    return update_signatures(settings, UpdateTarget(clamd.address, database,
                                                    database.parent / "run"), **timeouts)


def test_a_file_url_signature_is_fetched_and_loaded(clamd, database, published, tmp_path):
    site = published / "site.ndb"
    site.write_text(SIGNATURE)
    assert scan(clamd, tmp_path, CONTENT) is VerdictKind.CLEAN

    result = update(clamd, database, custom(site))

    assert result.failure is None and result.warnings == ()
    assert result.changed and result.before.generation != result.after.generation
    assert (database / "site.ndb").read_text() == SIGNATURE
    assert scan(clamd, tmp_path, CONTENT) is VerdictKind.INFECTED
    assert scan(clamd, tmp_path, EICAR) is VerdictKind.INFECTED  # the seeded ones stay

    again = update(clamd, database, custom(site))
    assert (again.changed, again.failure) == (False, None)
    assert again.after == result.after


def test_offline_the_official_download_is_one_warning_and_custom_urls_still_update(
        clamd, database, published, tmp_path):
    """The official pass asks a mirror that nothing answers (a closed local port: offline
    whatever the machine, and no 200 MB download where it is not)."""
    site = published / "site.ndb"
    site.write_text(SIGNATURE)
    offline = {"official": True, "privateMirror": f"http://127.0.0.1:{free_port()}"}

    result = update(clamd, database, custom(site, **offline))

    assert result.failure is None
    [warning] = result.warnings
    assert warning.startswith("official signatures not updated: ") and "\n" not in warning
    assert result.changed
    assert scan(clamd, tmp_path, CONTENT) is VerdictKind.INFECTED


def test_a_missing_custom_file_is_a_one_line_failure_and_clamd_keeps_its_signatures(
        clamd, database, published, tmp_path):
    result = update(clamd, database, custom(published / "missing.ndb"))

    assert result.failure is not None and "\n" not in result.failure
    assert "missing.ndb" in result.failure
    assert not result.changed
    assert scan(clamd, tmp_path, EICAR) is VerdictKind.INFECTED


def test_a_broken_custom_file_never_reaches_clamd(clamd, database, published, tmp_path):
    """freshclam tests each new file before it replaces the old one."""
    site = published / "site.ndb"
    site.write_text(SIGNATURE)
    first = update(clamd, database, custom(site))
    site.write_text("not a signature\n")

    result = update(clamd, database, custom(site))

    assert result.failure is not None and "Malformed database" in result.failure
    assert not result.changed and result.after == first.after
    assert (database / "site.ndb").read_text() == SIGNATURE
    assert scan(clamd, tmp_path, CONTENT) is VerdictKind.INFECTED


def test_clamd_refusing_a_broken_database_keeps_the_last_good_one(clamd, database, tmp_path):
    """A file put there by hand (no freshclam to test it): clamd's RELOAD fails, it goes on
    with the engine it had, and the update says so in one line instead of waiting forever."""
    before = ClamdClient(clamd.address, timeout=30).signatures()
    (database / "by-hand.ndb").write_text("not a signature\n")

    result = update(clamd, database, SignatureSettings(official=False), reload_timeout=3)

    assert result.failure is not None and "did not load the new signatures" in result.failure
    assert result.after == before
    assert scan(clamd, tmp_path, EICAR) is VerdictKind.INFECTED

    (database / "by-hand.ndb").unlink()
    assert update(clamd, database, SignatureSettings(official=False)).failure is None


def test_a_custom_url_taken_out_takes_its_signature_out_of_clamd(clamd, database, published,
                                                                 tmp_path):
    site = published / "site.ndb"
    site.write_text(SIGNATURE)
    update(clamd, database, custom(site))
    assert scan(clamd, tmp_path, CONTENT) is VerdictKind.INFECTED

    result = update(clamd, database, custom())

    assert result.changed and result.failure is None
    assert result.removed == ("site.ndb",)
    assert not (database / "site.ndb").exists()
    assert scan(clamd, tmp_path, CONTENT) is VerdictKind.CLEAN
    assert scan(clamd, tmp_path, EICAR) is VerdictKind.INFECTED
