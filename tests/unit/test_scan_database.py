"""The data root's own signature database (seeded once, then freshclam's), and which clamd and
directory an instance updates."""

from __future__ import annotations

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.config.schema import SsftpConfig
from ssftp.errors import SignatureUpdateError
from ssftp.layout import DataLayout
from ssftp.scan.database import (
    TEST_SIGNATURES,
    UpdateTarget,
    drop_custom_files,
    seed,
    updatable,
    update_target,
)
from ssftp.scan.signatures import GENERATION_FILE


def test_a_first_start_seeds_the_test_signatures_and_the_official_copies(tmp_path):
    system = tmp_path / "var-lib-clamav"
    system.mkdir()
    (system / "daily.cld").write_bytes(b"official daily")
    (system / "freshclam.dat").write_bytes(b"not a database")
    database = seed(tmp_path / "db", official=True, system=system)

    names = sorted(path.name for path in database.iterdir())
    assert names == ["daily.cld", GENERATION_FILE, "ssftp-test.hdb", "ssftp-test.ndb"]
    assert (database / "daily.cld").read_bytes() == b"official daily"
    assert (database / "ssftp-test.hdb").read_bytes() == \
        (TEST_SIGNATURES / "ssftp-test.hdb").read_bytes()


def test_without_official_signatures_no_official_copies(tmp_path):
    system = tmp_path / "var-lib-clamav"
    system.mkdir()
    (system / "main.cvd").write_bytes(b"official main")
    database = seed(tmp_path / "db", official=False, system=system)
    assert not (database / "main.cvd").exists()


def test_a_seeded_directory_is_left_to_freshclam(tmp_path):
    """What a later start finds there is what updates made of it: never seeded over."""
    database = seed(tmp_path / "db", official=False, system=tmp_path)
    (database / "ssftp-test.ndb").unlink()
    (database / "site.ndb").write_text("Site.Test:0:*:6869\n")
    stamp = (database / GENERATION_FILE).read_text()

    seed(database, official=False, system=tmp_path)

    assert not (database / "ssftp-test.ndb").exists()
    assert (database / GENERATION_FILE).read_text() == stamp


def config(**clamav: object) -> SsftpConfig:
    return SsftpConfig.model_validate({"clamav": clamav})


def test_ssftp_ups_own_clamd_is_updated_in_the_data_root(tmp_path):
    layout = DataLayout.at(tmp_path)
    target = update_target(config(), layout)
    assert target.address == ClamdAddress(unix_path=str(layout.clamd / "clamd.sock"))
    assert target.database == tmp_path / "system" / "clamav"
    assert target.run_dir == tmp_path / "system" / "freshclam"


def test_a_clamd_of_the_operators_needs_its_database_directory(tmp_path):
    with pytest.raises(SignatureUpdateError, match=r"set clamav\.signatures\.databaseDirectory"):
        update_target(config(address="clamd:3310"), DataLayout.at(tmp_path))
    target = update_target(config(address="clamd:3310",
                                  signatures={"databaseDirectory": "/srv/clamav"}),
                           DataLayout.at(tmp_path))
    assert (target.address, str(target.database)) == (ClamdAddress.parse("clamd:3310"),
                                                       "/srv/clamav")


def test_the_database_directory_must_be_absolute():
    with pytest.raises(ValueError, match="absolute path"):
        config(signatures={"databaseDirectory": "clamav"})


@pytest.mark.parametrize(("clamav", "expected"), [
    ({}, True),
    ({"address": "clamd:3310"}, False),
    ({"address": "clamd:3310", "signatures": {"databaseDirectory": "/srv/clamav"}}, True),
])
def test_updatable_where_a_target_is_found(tmp_path, clamav, expected):
    settings = config(**clamav)
    assert updatable(settings) is expected
    if expected:
        update_target(settings, DataLayout.at(tmp_path))
    else:
        with pytest.raises(SignatureUpdateError):
            update_target(settings, DataLayout.at(tmp_path))


def test_a_custom_url_taken_out_of_the_config_takes_its_file_with_it(tmp_path):
    """A signature that turned out to be a false positive stops matching once its URL is
    gone; what no custom URL ever gave (the seeded files, the official ones) stays."""
    database = seed(tmp_path / "db", official=False, system=tmp_path)
    target = UpdateTarget(ClamdAddress(unix_path="/nowhere"), database, tmp_path / "run")
    for name in ("site.ndb", "partner.hdb", "daily.cld", "by-hand.ndb"):
        (database / name).write_text("x\n")
    urls = ["file:///srv/sigs/site.ndb", "https://sigs.example.com/get/partner.hdb",
            "https://mirror.example.com/daily.cld"]
    assert drop_custom_files(target, urls) == []

    assert drop_custom_files(target, urls[:1]) == ["partner.hdb"]

    assert {path.name for path in database.iterdir()} == {
        "by-hand.ndb", "daily.cld", GENERATION_FILE, "site.ndb", "ssftp-test.hdb",
        "ssftp-test.ndb"}
    assert drop_custom_files(target, urls[:1]) == []  # said once


def test_with_clamd_switched_off_there_is_nothing_to_update(tmp_path):
    """ICAP alone: no signature update is scheduled, and `update-signatures` says why."""
    icap_alone = SsftpConfig.model_validate(
        {"clamav": {"enabled": False}, "icap": {"servers": ["icap://127.0.0.1/avscan"]}})
    assert updatable(icap_alone) is False
    with pytest.raises(SignatureUpdateError, match=r"clamav\.enabled: false"):
        update_target(icap_alone, DataLayout.at(tmp_path))
    pool = config(address=["/run/a.sock", "/run/b.sock"])
    assert updatable(pool) is False
    with pytest.raises(SignatureUpdateError, match="pool of clamds"):
        update_target(pool, DataLayout.at(tmp_path))
