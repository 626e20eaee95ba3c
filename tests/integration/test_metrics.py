"""ssftp.metrics moved by real scans and a real clamd: scans counted by verdict and timed from
the upload, and the /healthz clamd check that PINGs the session's clamd.

The metrics are one set per process (ssftp.metrics), so the tests compare values before and
after rather than absolute figures."""

from __future__ import annotations

import os
import time

from ssftp.addresses import ClamdAddress
from ssftp.runtime.listener import engine_status
from ssftp.scan.clamd import ClamdClient
from testkit.files import EICAR
from tests.support.metrics import sample
from tests.support.scanning import make_scanner, stage


def test_clamd_check_pings_the_scanning_clamd_and_sets_clamd_up(clamd, tmp_path):
    assert engine_status(None, "clamd") == "off"
    assert engine_status(ClamdClient(clamd.address), "clamd") == "up"
    assert sample("ssftp_clamd_up", address=str(clamd.address)) == 1
    nobody = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "nobody.sock")))
    assert engine_status(nobody, "clamd") == "down"
    # One series per clamd: the one that answered still says so.
    assert sample("ssftp_clamd_up", address=str(nobody.address)) == 0
    assert sample("ssftp_clamd_up", address=str(clamd.address)) == 1


def test_scans_are_counted_by_verdict_and_timed_from_the_upload(layout, client, owners):
    scanner = make_scanner(layout, client, owners)
    clean = sample("ssftp_scans_total", verdict="clean")
    infected = sample("ssftp_scans_total", verdict="infected")
    timed = sample("ssftp_scan_seconds_count")
    for name, data in (("ok.txt", b"fine\n"), ("eicar.com", EICAR)):
        assert scanner.scan(stage(layout, f"partner-a/{name}", data)) is not None
    assert sample("ssftp_scans_total", verdict="clean") == clean + 1
    assert sample("ssftp_scans_total", verdict="infected") == infected + 1
    assert sample("ssftp_scan_seconds_count") == timed + 2


def test_a_file_with_its_source_mtime_is_timed_from_its_staging(layout, client, owners):
    """``put -p`` leaves the source's mtime (here a year ago) on the staged file: on main the
    histogram took that as the upload's close and counted a year-long scan."""
    scanner = make_scanner(layout, client, owners)
    staged = stage(layout, "partner-a/kept-times.txt", b"times kept\n")
    year_ago = time.time() - 365 * 24 * 3600
    os.utime(staged, (year_ago, year_ago))
    slow = sample("ssftp_scan_seconds_bucket", le="+Inf") - sample("ssftp_scan_seconds_bucket",
                                                                   le="3600.0")
    assert scanner.scan(staged) is not None
    assert (sample("ssftp_scan_seconds_bucket", le="+Inf")
            - sample("ssftp_scan_seconds_bucket", le="3600.0")) == slow
