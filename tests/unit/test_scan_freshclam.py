"""freshclam's config and passes, and the one line a failure comes down to. Real freshclam runs
in the integration tests; here a stand-in script plays it where its exit matters."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from ssftp.config.schema import SignatureSettings
from ssftp.scan import freshclam
from ssftp.scan.freshclam import failure_reason, passes, render_config, run_freshclam

# What freshclam 1.4.6 printed, offline, for the official databases.
OFFLINE = """\
ClamAV update process started at Sun Dec  6 06:10:01 2026
WARNING: Can't query current.cvd.clamav.net
WARNING: Invalid DNS reply. Falling back to HTTP mode.
Trying to retrieve CVD header from https://database.clamav.net/daily.cvd
ERROR: remote_cvdhead: Download failed (6) ERROR:  Message: Couldn't resolve host name
WARNING: Failed to get daily database version information from server: https://database.clamav.net
ERROR: check_for_new_database_version: Failed to find daily database using server https://database.clamav.net.
Giving up on https://database.clamav.net...
ERROR: Update failed for database: daily
ERROR: Database update process failed: HTTP GET failed
ERROR: Update failed.
"""
# ... and for a custom URL whose file does not exist.
MISSING = """\
ClamAV update process started at Sun Dec  6 06:10:17 2026
WARNING: DNS Update Info disabled. Falling back to HTTP mode.
DatabaseCustomURL: file /srv/sigs/missing.ndb missing
Unexpected error when attempting to update from custom database URL: file:///srv/sigs/missing.ndb
WARNING: fc_download_url_databases: fc_download_url_database failed: Failed to update database (14)
ERROR: Database update process failed: Failed to update database
ERROR: Update failed.
"""


def settings(**values: object) -> SignatureSettings:
    return SignatureSettings.model_validate(values)


@pytest.mark.parametrize(("values", "expected"), [
    ({}, ["official"]),
    ({"customUrls": ["file:///srv/sigs/site.ndb"]}, ["official", "custom"]),
    ({"official": False, "customUrls": ["file:///srv/sigs/site.ndb"]}, ["custom"]),
    ({"official": False}, []),
])
def test_passes(values, expected):
    assert passes(settings(**values)) == expected


def test_the_official_pass_has_the_mirror_and_no_custom_url(tmp_path):
    conf = render_config(settings(customUrls=["file:///srv/sigs/site.ndb"]), tmp_path,
                         tmp_path / "run", "official").read_text()
    assert f"DatabaseDirectory {tmp_path}\n" in conf
    assert "DatabaseMirror database.clamav.net\n" in conf
    settings_lines = [line for line in conf.splitlines() if not line.startswith("#")]
    assert not [line for line in settings_lines if line.startswith(("DatabaseCustomURL",
                                                                    "NotifyClamd"))]
    assert "@" not in "\n".join(settings_lines)  # every placeholder filled in


def test_the_custom_pass_has_every_custom_url(tmp_path):
    urls = ["file:///srv/sigs/site.ndb", "https://sigs.example.com/extra.hdb"]
    conf = render_config(settings(customUrls=urls), tmp_path, tmp_path / "run",
                         "custom").read_text()
    assert [line for line in conf.splitlines() if line.startswith("DatabaseCustomURL")] == [
        f"DatabaseCustomURL {url}" for url in urls]


def test_a_private_mirror_replaces_the_official_one(tmp_path):
    conf = render_config(settings(privateMirror="https://mirror.example.com/clamav/"), tmp_path,
                         tmp_path / "run", "official").read_text()
    assert "PrivateMirror https://mirror.example.com/clamav\n" in conf
    assert "DatabaseMirror" not in conf


def test_freshclam_started_by_root_drops_to_the_directory_owner(tmp_path):
    """It refuses to run as root without a DatabaseOwner; the directory's owner keeps the
    files readable by whoever loads the rest of them."""
    conf = render_config(settings(), tmp_path, tmp_path / "run", "official").read_text()
    assert f"DatabaseOwner {pwd.getpwuid(tmp_path.stat().st_uid).pw_name}\n" in conf


def test_an_offline_failure_is_one_line_of_its_reasons():
    reason = failure_reason(OFFLINE, 11)
    assert "\n" not in reason
    assert "Couldn't resolve host name" in reason
    assert "Update failed for database: daily" in reason
    assert "Update failed." not in reason.split("; ")


def test_a_missing_custom_file_is_named():
    assert failure_reason(MISSING, 14) == (
        "DatabaseCustomURL: file /srv/sigs/missing.ndb missing; Unexpected error when "
        "attempting to update from custom database URL: file:///srv/sigs/missing.ndb")


def test_no_reason_in_the_output_falls_back_to_the_exit_status():
    assert failure_reason("", 62) == "freshclam exited with status 62"


def stand_in(tmp_path: Path, body: str) -> str:
    script = tmp_path / "freshclam"
    script.write_text(f"#!/bin/sh\n{body}\n")
    os.chmod(script, 0o755)
    return str(script)


def test_a_missing_freshclam_says_which_package(tmp_path, monkeypatch):
    monkeypatch.setattr(freshclam, "FRESHCLAM_BINARIES", (str(tmp_path / "none"),))
    run = run_freshclam(tmp_path / "freshclam.conf", "official", timeout=30)
    assert not run.ok
    assert run.reason == "freshclam is not installed (Debian package clamav-freshclam)"


def test_a_failed_run_keeps_its_output_and_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(freshclam, "FRESHCLAM_BINARIES",
                        (stand_in(tmp_path, "echo 'ERROR: Can not change dir'; exit 50"),))
    run = run_freshclam(tmp_path / "freshclam.conf", "custom", timeout=30)
    assert (run.ok, run.reason) == (False, "Can not change dir")
    assert "Can not change dir" in run.output


def test_a_freshclam_that_hangs_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(freshclam, "FRESHCLAM_BINARIES",
                        (stand_in(tmp_path, "echo started; exec sleep 60"),))
    run = run_freshclam(tmp_path / "freshclam.conf", "custom", timeout=0.5)
    assert (run.ok, run.reason) == (False, "freshclam did not finish within 0.5 s")


def test_the_custom_pass_asks_for_the_custom_urls_only(tmp_path, monkeypatch):
    """``--update-db=custom``: freshclam skips the official databases (and does not delete
    them, as an ``ExcludeDatabase`` would)."""
    monkeypatch.setattr(freshclam, "FRESHCLAM_BINARIES", (stand_in(tmp_path, 'echo "$@"'),))
    run = run_freshclam(tmp_path / "freshclam.conf", "custom", timeout=30)
    assert run.ok
    assert "--update-db=custom --no-dns" in run.output


def test_a_password_in_a_url_never_reaches_the_output(tmp_path, monkeypatch):
    said = "ERROR: Unexpected error from custom database URL: https://site:s3cret@sigs.example.com/x.ndb"
    monkeypatch.setattr(freshclam, "FRESHCLAM_BINARIES",
                        (stand_in(tmp_path, f"echo '{said}'; exit 14"),))
    run = run_freshclam(tmp_path / "freshclam.conf", "custom", timeout=30)
    assert "s3cret" not in run.output + run.reason
    assert "https://***@sigs.example.com/x.ndb" in run.reason
