"""ssftp.scan.signatures: reading clamd's VERSION, the database label every verdict carries,
and the generation that names a database ssftp updates (custom signatures included)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from ssftp.scan.signatures import (
    GENERATION_FILE,
    GENERATION_MARKER,
    Signatures,
    database_files,
    generation_line,
    parse_generation,
    parse_version,
    write_generation,
)


def test_version_with_an_official_database_names_engine_daily_and_build_date():
    loaded = parse_version("ClamAV 1.4.6/27480/Sat Dec  5 08:26:00 2026\n")
    assert (loaded.engine, loaded.daily) == ("ClamAV 1.4.6", 27480)
    assert loaded.built == datetime(2026, 12, 5, 8, 26, tzinfo=UTC)
    assert loaded.database == "27480"
    assert str(loaded) == "ClamAV 1.4.6/27480"
    assert loaded.age_seconds(datetime(2026, 12, 6, 8, 26, tzinfo=UTC)) == 24 * 3600


def test_version_without_an_official_database_is_the_engine_alone():
    """Offline, with custom signatures only: no daily number, no date, so no age."""
    loaded = parse_version("ClamAV 1.4.6", generation="0a1b2c3d4e5f")
    assert (loaded.daily, loaded.built, loaded.age_seconds()) == (None, None, None)
    assert loaded.database == "+0a1b2c3d4e5f"
    assert Signatures("ClamAV 1.4.6").database == "none"


def test_a_date_clamd_spells_oddly_leaves_the_age_unknown_not_an_error():
    loaded = parse_version("ClamAV 1.4.6/27480/someday")
    assert (loaded.daily, loaded.built) == (27480, None)


def test_the_generation_is_read_only_from_ssftps_own_signature_name():
    assert parse_generation("ssftp.Generation.0a1b2c3d4e5f.UNOFFICIAL") == "0a1b2c3d4e5f"
    assert parse_generation("ssftp.Generation.0a1b2c3d4e5f") == "0a1b2c3d4e5f"
    assert parse_generation("Eicar-Test-Signature") is None
    assert parse_generation(None) is None


def test_the_generation_signature_matches_exactly_the_marker():
    md5, size, name = generation_line("0a1b2c3d4e5f").strip().split(":")
    assert md5 == hashlib.md5(GENERATION_MARKER).hexdigest()
    assert (int(size), name) == (len(GENERATION_MARKER), "ssftp.Generation.0a1b2c3d4e5f")


def test_the_generation_changes_with_any_signature_file_and_only_with_them(tmp_path):
    (tmp_path / "site.ndb").write_text("Site.Sig:0:*:6e6f70650a\n")
    (tmp_path / "mirrors.dat").write_bytes(b"freshclam's own state")
    first = write_generation(tmp_path)
    assert (tmp_path / GENERATION_FILE).read_text() == generation_line(first)
    assert [path.name for path in database_files(tmp_path)] == ["site.ndb"]
    (tmp_path / "mirrors.dat").write_bytes(b"changed, but not a signature file")
    assert write_generation(tmp_path) == first
    (tmp_path / "site.ndb").write_text("Site.Sig:0:*:6e6f70650b\n")
    second = write_generation(tmp_path)
    assert second != first
    (tmp_path / "more.hdb").write_text("")
    assert write_generation(tmp_path) not in (first, second)
