"""ssftp.scan.scanner without a real clamd: the verdict of the fake clamd of testkit, whatever
it is, decides where the file goes, and only a clean verdict for exactly those bytes reaches
clean/ (an error, a reply that cannot be read, a silent clamd, a size limit never do); a clamd
that is not there leaves the file in staging; every scan is audited. The scanner against a
real clamd is in tests/integration/test_scan_scanner.py."""

from __future__ import annotations

import os

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.names import safe_name
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.results import Area
from tests.support.logs import audit_events
from tests.support.scanning import (
    MODES,
    files_under,
    free_closed_port,
    make_scanner,
    non_utf8_path,
    sha256,
    stage,
)


@pytest.mark.parametrize("mode", MODES)
def test_unreachable_clamd_leaves_the_file_in_staging(layout, tmp_path, owners, mode):
    down = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "no-such-clamd.sock")), timeout=2)
    data = os.urandom(5000)
    staged = stage(layout, "partner-a/deep/retry.bin", data)
    scanner = make_scanner(layout, down, owners, mode)
    result = scanner.scan(staged, "run-3")
    assert result.verdict == "error" and result.area is Area.STAGING
    assert result.destination == result.source == "staging/partner-a/deep/retry.bin"
    assert result.sha256 == sha256(data)
    assert staged.read_bytes() == data
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []
    assert scanner.claims.held() == []


def test_refused_tcp_clamd_is_an_error_not_clean(layout, owners):
    down = ClamdClient(ClamdAddress(host="127.0.0.1", port=free_closed_port()), timeout=2)
    staged = stage(layout, "partner-a/tcp.txt", b"hello")
    result = make_scanner(layout, down, owners).scan(staged)
    assert result.verdict == "error" and result.area is Area.STAGING
    assert staged.read_bytes() == b"hello"
    assert files_under(layout.clean) == []


def test_scanning_switched_off_passes_files_as_unscanned(layout, owners):
    data = b"no scanner configured"
    staged = stage(layout, "pulled/in/file.dat", data)
    result = make_scanner(layout, None, owners).scan(staged, "run-4")
    assert result.verdict == "unscanned" and result.area is Area.CLEAN
    assert result.signature is None
    assert result.account == "downloader:pull-x"
    assert result.sha256 == sha256(data) and result.size == len(data)
    assert (layout.clean / "pulled" / "in" / "file.dat").read_bytes() == data


def test_a_failed_scan_is_audited_as_a_warning(layout, tmp_path, owners, audit_log):
    down = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "absent.sock")), timeout=2)
    make_scanner(layout, down, owners).scan(stage(layout, "partner-b/x.txt", b"x"), "run-6")
    [event] = audit_events(audit_log)
    assert event["event"] == "scan" and event["level"] == "warning"
    assert event["verdict"] == "error" and event["account"] == "partner-b"
    assert event["destination"] == "staging/partner-b/x.txt"
    assert event["flow_run_id"] == "run-6" and event["instance"] == "gw-test"


def test_a_file_with_a_non_utf8_name_is_audited_and_cleaned_under_a_safe_name(
        layout, owners, audit_log):
    directory = layout.staging / "partner-a" / os.fsdecode(b"d\xe9")
    directory.mkdir(parents=True)
    staged = non_utf8_path(directory, b"caf\xe9\n.txt")
    staged.write_bytes(b"latin-1 name")
    result = make_scanner(layout, None, owners).scan(staged)
    assert result.area is Area.CLEAN
    cleaned = layout.clean / "partner-a" / safe_name(directory.name) / safe_name(staged.name)
    assert cleaned.read_bytes() == b"latin-1 name"
    assert result.destination == cleaned.relative_to(layout.root).as_posix()
    assert result.destination.encode("utf-8")
    (event,) = audit_events(audit_log)
    assert event["event"] == "scan" and event["original_name"] == "partner-a/d\\xe9/caf\\xe9\\n.txt"

