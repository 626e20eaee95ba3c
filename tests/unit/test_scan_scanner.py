"""ssftp.scan.scanner without a real clamd: the verdict of the fake clamd of testkit, whatever
it is, decides where the file goes, and only a clean verdict for exactly those bytes reaches
clean/ (an error, a reply that cannot be read, a silent clamd, a size limit never do); a clamd
that is not there leaves the file in staging; every scan is audited. The scanner against a
real clamd is in tests/integration/test_scan_scanner.py."""

from __future__ import annotations

import json
import os
import socket

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.names import safe_name
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.results import Area
from ssftp.scan.router import VERDICT_RECORD_SUFFIX
from testkit.fake_clamd import HANG_UP, SILENCE, like_clamd, scans
from testkit.files import EICAR
from tests.support.logs import app_log_records, json_lines
from tests.support.scanning import (
    MODES,
    ODD_SUB_PATH,
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
    [event] = json_lines(audit_log)
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
    (event,) = json_lines(audit_log)
    assert event["event"] == "scan" and event["original_name"] == "partner-a/d\\xe9/caf\\xe9\\n.txt"


# --- the verdict of a fake clamd decides, and only OK for these bytes is clean ----------------


def fake_scanner(layout, owners, fake, mode="auto", timeout=30.0):
    return make_scanner(layout, ClamdClient(fake.address, timeout=timeout), owners, mode)


@pytest.mark.parametrize("mode", MODES)
def test_ok_for_the_files_bytes_passes_it_to_clean(layout, owners, fake_clamd, mode):
    data = os.urandom(100_000)
    staged = stage(layout, ODD_SUB_PATH, data)
    result = fake_scanner(layout, owners, fake_clamd, mode).scan(staged)
    assert (result.verdict, result.area) == ("clean", Area.CLEAN)
    assert (layout.clean / ODD_SUB_PATH).read_bytes() == data
    assert [request.data for request in fake_clamd.scans] == [data]  # what clamd was given


def test_found_goes_to_quarantine_with_a_record_naming_the_signature(layout, owners, fake_clamd):
    fake_clamd.answer = scans(lambda request: f"{request.name}: Fake.Sig-7 FOUND".encode())
    result = fake_scanner(layout, owners, fake_clamd).scan(
        stage(layout, "partner-b/in/report.pdf", b"%PDF harmless to a real clamd"))
    assert (result.verdict, result.area, result.signature) == ("infected", Area.QUARANTINE,
                                                               "Fake.Sig-7")
    quarantined = layout.quarantine / "partner-b" / "in" / "report.pdf"
    assert quarantined.read_bytes() == b"%PDF harmless to a real clamd"
    record = json.loads(quarantined.with_name("report.pdf" + VERDICT_RECORD_SUFFIX).read_text())
    assert (record["verdict"], record["signature"]) == ("infected", "Fake.Sig-7")
    assert files_under(layout.clean) == [] and files_under(layout.staging) == []


@pytest.mark.parametrize("reply", [b"fd[9]: Can't allocate memory ERROR",
                                   b"\xff\xfe garbage", b"PONG", b"fd[9]: OKAY", HANG_UP])
def test_an_error_or_a_reply_that_cannot_be_read_leaves_the_file_in_staging(
        layout, owners, fake_clamd, reply):
    fake_clamd.answer = scans(reply)
    staged = stage(layout, "partner-a/retry.txt", b"scanned again later")
    result = fake_scanner(layout, owners, fake_clamd).scan(staged)
    assert (result.verdict, result.area) == ("error", Area.STAGING)
    assert staged.read_bytes() == b"scanned again later"
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []


@pytest.mark.parametrize("reply", [b"INSTREAM size limit exceeded. ERROR",
                                   b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND"])
def test_clamds_limits_send_the_file_to_quarantine_as_unscannable(layout, owners, fake_clamd,
                                                                  reply):
    fake_clamd.answer = scans(reply)
    result = fake_scanner(layout, owners, fake_clamd, "stream").scan(
        stage(layout, "partner-a/big.iso", b"too much for clamd"))
    assert (result.verdict, result.area) == ("unscannable", Area.QUARANTINE)
    assert (layout.quarantine / "partner-a" / "big.iso").read_bytes() == b"too much for clamd"
    assert files_under(layout.clean) == []


def test_a_silent_clamd_times_out_and_the_file_waits_in_staging(layout, owners, fake_clamd):
    fake_clamd.answer = scans(SILENCE)
    staged = stage(layout, "partner-a/slow.bin", b"clamd never answers about this")
    with app_log_records() as seen:
        result = fake_scanner(layout, owners, fake_clamd, timeout=1).scan(staged)
    assert (result.verdict, result.area) == ("error", Area.STAGING)
    assert "timed out" in result.detail and not result.clamd_unreachable
    assert staged.read_bytes() == b"clamd never answers about this"
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []
    (logged,) = [record for record in seen if record.getMessage() == "scan timed out"]
    assert logged.fields["file"] == "staging/partner-a/slow.bin"  # type: ignore[attr-defined]


def test_a_hung_clamd_leaves_every_file_in_staging_as_an_outage(layout, owners, fake_clamd):
    """A clamd that answers neither the scan nor PING: the first file waits out the timeout
    (after asking which signatures are loaded, which gets no answer either), the next ones
    are not even sent; all stay in staging, marked unreachable (the queue then
    waits for a PING instead of retrying each file)."""
    fake_clamd.answer = lambda request: SILENCE
    scanner = fake_scanner(layout, owners, fake_clamd, timeout=0.5)
    first, second = (scanner.scan(stage(layout, f"partner-a/{name}", b"x"))
                     for name in ("first.txt", "second.txt"))
    assert [(r.verdict, r.area, r.clamd_unreachable) for r in (first, second)] == [
        ("error", Area.STAGING, True)] * 2
    assert [request.command for request in fake_clamd.requests] == ["VERSION", "FILDES", "PING"]
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []


def test_every_verdict_names_the_signatures_clamd_had_loaded(layout, owners, fake_clamd,
                                                             audit_log):
    """The engine and database from clamd's VERSION, and the generation its answer on the
    marker names, go into the result, the audit record and the quarantine verdict record."""

    def answer(request):
        if request.probes_generation:
            return b"stream: ssftp.Generation.0123456789ab.UNOFFICIAL FOUND"
        return like_clamd(request)

    fake_clamd.answer = answer
    scanner = fake_scanner(layout, owners, fake_clamd)
    clean = scanner.scan(stage(layout, "partner-a/ok.txt", b"harmless"))
    infected = scanner.scan(stage(layout, "partner-a/bad.txt", EICAR))
    for result in (clean, infected):
        assert (result.engine, result.database) == ("ClamAV 1.0.0", "27000+0123456789ab")
    assert [(event["verdict"], event["engine"], event["database"])
            for event in json_lines(audit_log)] == [
        ("clean", "ClamAV 1.0.0", "27000+0123456789ab"),
        ("infected", "ClamAV 1.0.0", "27000+0123456789ab")]
    record = json.loads((layout.quarantine / "partner-a" / ("bad.txt" + VERDICT_RECORD_SUFFIX))
                        .read_text())
    assert record["database"] == "27000+0123456789ab"
    # Asked once for both files: the answer is kept for a while, not asked per scan.
    assert [request.command for request in fake_clamd.requests].count("VERSION") == 1


def test_every_outcome_names_the_worker_that_judged_it(layout, owners, fake_clamd, audit_log):
    """The worker's name goes into the result, the audit record and the quarantine verdict
    record, whatever the verdict: an operator can tell a sick worker from a healthy one."""
    scanner = make_scanner(layout, ClamdClient(fake_clamd.address), owners, worker="scanner-b")
    clean = scanner.scan(stage(layout, "partner-a/ok.txt", b"harmless"))
    infected = scanner.scan(stage(layout, "partner-a/bad.txt", EICAR))
    fake_clamd.answer = scans(lambda request: b"fd[9]: Can't allocate memory ERROR")
    failed = scanner.scan(stage(layout, "partner-a/later.txt", b"tried again"))
    assert [result.worker for result in (clean, infected, failed)] == ["scanner-b"] * 3
    assert [event["worker"] for event in json_lines(audit_log)] == ["scanner-b"] * 3
    record = json.loads((layout.quarantine / "partner-a" / ("bad.txt" + VERDICT_RECORD_SUFFIX))
                        .read_text())
    assert record["worker"] == "scanner-b"


def test_an_unnamed_worker_is_named_by_its_host_and_pid(layout, owners, fake_clamd):
    result = make_scanner(layout, ClamdClient(fake_clamd.address), owners).scan(
        stage(layout, "partner-a/ok.txt", b"harmless"))
    assert result.worker == f"{socket.gethostname()}.{os.getpid()}"
