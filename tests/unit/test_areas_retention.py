"""Retention on a real data root: what has been in its area longer than its days is removed,
by when it entered (its ctime, never the mtime a client sets), with an audit record each;
nothing outside the area, nothing of ssftp's own, and never cut short for a reader."""

from __future__ import annotations

import os
import time

from ssftp.areas.retention import DAY_SECONDS, apply_retention
from ssftp.config.schema import RetentionSettings
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from testkit.files import EICAR
from tests.support.logs import json_lines
from tests.support.quarantine import quarantine_config, quarantined
from tests.support.scanning import files_under

OWNERS = StagingOwners(quarantine_config())


def put(path, data=b"data"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def retention(layout, now, **days):
    return apply_retention(layout, RetentionSettings.model_validate(days), OWNERS.owner_of,
                           instance="gw-q", now=now)


def test_only_what_is_older_than_its_areas_days_is_removed_with_a_record_each(
        layout, fake_clamd, audit_log):
    clean = put(layout.clean / "acme" / "report.csv")
    archived = put(layout.uploadarchive / "acme" / "sent.csv")
    infected = quarantined(layout, ClamdClient(fake_clamd.address, timeout=10),
                           "acme/x.pdf", EICAR)
    entered = time.time()

    two_days_on = retention(layout, entered + 2 * DAY_SECONDS, cleanDays=1, quarantineDays=3)

    assert not clean.exists()
    assert infected.exists() and archived.exists()
    assert two_days_on.rows() == [{"account": "acme", "area": "clean", "removed": 1}]

    four_days_on = retention(layout, entered + 4 * DAY_SECONDS, cleanDays=1, quarantineDays=3)

    assert files_under(layout.quarantine) == []  # the file and its verdict record
    assert archived.exists()  # no uploadArchiveDays: kept forever
    assert four_days_on.rows() == [{"account": "acme", "area": "quarantine", "removed": 1}]
    records = [r for r in json_lines(audit_log) if r["event"] == "retention"]
    assert [(r["file"], r["account"]) for r in records] == [
        ("clean/acme/report.csv", "acme"), ("quarantine/acme/x.pdf", "acme")]
    assert records[1]["sha256"]


def test_a_past_mtime_set_by_a_client_does_not_make_a_file_old(layout, audit_log):
    path = put(layout.clean / "acme" / "kept-times.csv")
    os.utime(path, (0, 0))  # `put -p` of a file from 1970
    report = retention(layout, time.time(), cleanDays=1)
    assert path.exists()
    assert report.total == 0


def test_a_reader_keeps_reading_the_whole_file(layout, audit_log):
    data = os.urandom(1 << 20)
    path = put(layout.clean / "acme" / "big.bin", data)
    with path.open("rb") as reader:
        head = reader.read(1000)
        retention(layout, time.time() + 2 * DAY_SECONDS, cleanDays=1)
        assert not path.exists()
        assert head + reader.read() == data


def test_nothing_outside_the_area_or_of_ssftps_own_is_touched(layout, tmp_path, audit_log):
    outside = put(tmp_path / "outside" / "old.csv")
    os.symlink(outside.parent, layout.clean / "linked")
    ours = put(layout.clean / "acme" / ".ssftp-tmp-0123")

    retention(layout, time.time() + 2 * DAY_SECONDS, cleanDays=1)

    assert outside.exists()
    assert ours.exists()
    assert (layout.clean / "linked").is_symlink()


def test_a_released_files_history_record_goes_once_it_is_as_old(layout, audit_log):
    history = put(layout.quarantine / "acme" / "x.pdf.released-20260101T000000.000000Z"
                  ".verdict.json", b"{}")
    retention(layout, time.time() + 2 * DAY_SECONDS, quarantineDays=1)
    assert not history.exists()
