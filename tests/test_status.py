"""``ssftp status PATH|SHA256``: a file's history from the audit log (ssftp.audit_history).

The audit lines are made by the audit log's own formatter, so they are spelt as the running
gateway spells them: one file's life across its names (an absolute staging path for a download,
the staging sub path for a scan and a webhook, clean/ and quarantine/ destinations, an upload's
path in clean/), rotated and gzipped logs, and the command itself in a subprocess.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ssftp import audit_history
from ssftp.audit_history import (
    AuditSource,
    Query,
    audit_logs,
    file_history,
    format_record,
    name_key,
    parse_query,
)
from ssftp.errors import InvalidValueError
from ssftp.layout import DataLayout
from ssftp.logs import AUDIT, JsonLinesFormatter
from ssftp.runtime.clamd_daemon import TEST_SIGNATURES, ClamdDaemon
from testkit.files import make_random_file, sha256_file
from tests.support import ServerThread, WebhookReceiver, wait_for, write_config
from tests.test_pipeline import EICAR, Pipeline, pipeline_config

SSFTP = str(Path(sys.executable).with_name("ssftp"))
SHA_X = "a1" * 32
SHA_X2 = "b2" * 32
SHA_Y = "a1" * 6 + "c3" * 26  # shares its first 12 digits with SHA_X
_FORMATTER = JsonLinesFormatter()


def history(logs: list[Path], query: Query, root: Path) -> list[dict[str, Any]]:
    """One instance's history, as ``ssftp status --data-dir`` reads it."""
    return file_history([AuditSource(logs, root, "a")], query)


def audit_line(event: str, level: int = logging.INFO, /, **fields: Any) -> str:
    """A record as write_audit_event writes it."""
    record = logging.getLogger(AUDIT).makeRecord(AUDIT, level, __file__, 0, event, (), None,
                                                 extra={"fields": fields})
    return _FORMATTER.format(record) + "\n"


def scan(root: Path, file: str, sha256: str, verdict: str, destination: str,
         signature: str | None = None, flow_run_id: str = "run-1") -> str:
    return audit_line("scan", file=file, account="acme", size=68, sha256=sha256, verdict=verdict,
                      signature=signature, detail="", source=f"staging/{file}",
                      destination=destination, area=destination.partition("/")[0],
                      time="2026-12-01T12:00:00", flow_run_id=flow_run_id, instance="a")


def x_history(root: Path) -> list[str]:
    """The life of acme/in/x.dat: fetched, a failed scan, clean, its webhook, sent onward."""
    return [
        audit_line("download", downloader="partner", remote="/out/x.dat",
                   file=f"{root}/staging/acme/in/x.dat", size=68, flow_run_id="dl-run"),
        scan(root, "acme/in/x.dat", SHA_X, "error", "staging/acme/in/x.dat"),
        scan(root, "acme/in/x.dat", SHA_X, "clean", "clean/acme/in/x.dat", flow_run_id="run-2"),
        audit_line("webhook", file="acme/in/x.dat", webhook="clean", url="http://h/",
                   delivered=True, event_id="e1", flow_run_id="notify-run"),
        audit_line("upload", uploader="onward", file="acme/in/x.dat", remote="h:22/x.dat",
                   size=68, archived=f"{root}/uploadarchive/acme/in/x.dat",
                   flow_run_id="ul-run"),
    ]


def others(root: Path) -> list[str]:
    """Other files: infected acme/in/y.dat, and one whose name contains x.dat's."""
    return [
        scan(root, "acme/in/y.dat", SHA_Y, "infected", "quarantine/acme/in/y.dat",
             signature="Eicar-Test-Signature"),
        audit_line("webhook", file="acme/in/y.dat", webhook="infected", url="http://h/",
                   delivered=False, event_id="e2", flow_run_id="notify-run"),
        scan(root, "acme/in/x.dat.old", SHA_X2, "clean", "clean/acme/in/x.dat.old"),
    ]


def write_log(root: Path, lines: list[str], name: str = "audit.log") -> Path:
    log = root / "log"
    log.mkdir(parents=True, exist_ok=True)
    path = log / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as file:
            file.writelines(lines)
    else:
        path.write_text("".join(lines))
    return path


def events(records: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(record["event"], record.get("verdict")) for record in records]


X_EVENTS = [("download", None), ("scan", "error"), ("scan", "clean"), ("webhook", None),
            ("upload", None)]


@pytest.mark.parametrize("asked", ["acme/in/x.dat", "staging/acme/in/x.dat",
                                   "clean/acme/in/x.dat", SHA_X, SHA_X.upper(), SHA_X[:14]])
def test_history_follows_the_file_across_its_names(tmp_path, asked):
    lines = x_history(tmp_path)
    write_log(tmp_path, [*others(tmp_path)[:1], *lines[:3], *others(tmp_path)[1:], *lines[3:]])
    records = history(audit_logs(tmp_path / "log"), parse_query(asked, tmp_path), tmp_path)
    assert events(records) == X_EVENTS
    assert records[0]["downloader"] == "partner" and records[-1]["uploader"] == "onward"


def test_quarantined_file_by_its_quarantine_name(tmp_path):
    write_log(tmp_path, [*x_history(tmp_path), *others(tmp_path)])
    records = history(audit_logs(tmp_path / "log"),
                           parse_query("quarantine/acme/in/y.dat", tmp_path), tmp_path)
    assert events(records) == [("scan", "infected"), ("webhook", None)]
    assert records[0]["signature"] == "Eicar-Test-Signature"


def test_other_bytes_under_the_same_name_are_another_file_by_sha(tmp_path):
    """By path: every version stored there; by sha256: only the records of those bytes (and
    the records without a sha256 that name the file)."""
    new_version = scan(tmp_path, "acme/in/x.dat", SHA_X2, "clean", "clean/acme/in/x.dat")
    write_log(tmp_path, [*x_history(tmp_path), new_version])
    logs = audit_logs(tmp_path / "log")
    by_path = history(logs, parse_query("acme/in/x.dat", tmp_path), tmp_path)
    assert [record.get("sha256") for record in by_path][-1] == SHA_X2
    by_sha = history(logs, Query(sha256=SHA_X), tmp_path)
    assert events(by_sha) == X_EVENTS


def test_same_bytes_under_another_name_join_by_sha(tmp_path):
    copy = scan(tmp_path, "acme/copy.dat", SHA_X, "clean", "clean/acme/copy.dat")
    write_log(tmp_path, [*x_history(tmp_path), copy])
    records = history(audit_logs(tmp_path / "log"), Query(sha256=SHA_X), tmp_path)
    assert records[-1]["file"] == "acme/copy.dat"


def test_ambiguous_sha_prefix_is_refused(tmp_path):
    write_log(tmp_path, [*x_history(tmp_path), *others(tmp_path)])
    with pytest.raises(InvalidValueError, match="start of 2 sha256s"):
        history(audit_logs(tmp_path / "log"), parse_query(SHA_X[:12], tmp_path), tmp_path)


def test_unknown_file_has_no_history(tmp_path):
    write_log(tmp_path, x_history(tmp_path))
    logs = audit_logs(tmp_path / "log")
    assert history(logs, parse_query("acme/in/x", tmp_path), tmp_path) == []
    assert history(logs, parse_query("f" * 64, tmp_path), tmp_path) == []


def test_rotated_and_gzipped_logs_are_read_oldest_first(tmp_path):
    lines = x_history(tmp_path)
    write_log(tmp_path, lines[:1], "audit.log.3.gz")
    write_log(tmp_path, lines[1:2], "audit.log.2.gz")
    write_log(tmp_path, lines[2:3], "audit.log.1")
    write_log(tmp_path, lines[3:])
    write_log(tmp_path, lines[:1], "audit.log.1.unrelated")
    logs = audit_logs(tmp_path / "log")
    assert [path.name for path in logs] == ["audit.log.3.gz", "audit.log.2.gz", "audit.log.1",
                                            "audit.log"]
    records = history(logs, parse_query("acme/in/x.dat", tmp_path), tmp_path)
    assert events(records) == X_EVENTS


def test_dated_rotations_are_read_in_date_order_after_numbered_ones(tmp_path):
    """logrotate with ``dateext`` names its copies by date (``audit.log-20261130.gz``): on
    main they were passed over, and the history lost everything but today's log."""
    lines = x_history(tmp_path)
    write_log(tmp_path, lines[:1], "audit.log.1.gz")  # left from before dateext was on
    write_log(tmp_path, lines[1:2], "audit.log-20261129.gz")
    write_log(tmp_path, lines[2:3], "audit.log-20261130")
    write_log(tmp_path, lines[3:])
    write_log(tmp_path, lines[:1], "audit.log-old.txt")
    logs = audit_logs(tmp_path / "log")
    assert [path.name for path in logs] == ["audit.log.1.gz", "audit.log-20261129.gz",
                                            "audit.log-20261130", "audit.log"]
    assert events(history(logs, parse_query("acme/in/x.dat", tmp_path), tmp_path)) == X_EVENTS


def timed(lines: list[str], minute: int, instance: str) -> list[str]:
    """The records one second apart from ``12:<minute>:00``, and scans naming ``instance``,
    as that instance writes them."""
    records = [json.loads(line) for line in lines]
    for second, record in enumerate(records):
        record["time"] = f"2026-12-01T12:{minute:02d}:{second:02d}.000+00:00"
        if "instance" in record:
            record["instance"] = instance
    return [json.dumps(record) + "\n" for record in records]


def chained(a_root: Path, b_root: Path) -> list[AuditSource]:
    """acme/in/x.dat's life on A (x_history), then on B, where it arrived as from-a/x.dat:
    scanned, its webhook; and another file of B's under x.dat's name on A."""
    write_log(a_root, timed(x_history(a_root), 0, "a"))
    write_log(b_root, timed([
        scan(b_root, "from-a/x.dat", SHA_X, "clean", "clean/from-a/x.dat", flow_run_id="b-run"),
        audit_line("webhook", file="from-a/x.dat", webhook="clean", url="http://h/",
                   delivered=True, event_id="b1", flow_run_id="b-notify"),
        scan(b_root, "acme/in/x.dat", SHA_X2, "clean", "clean/acme/in/x.dat"),
    ], 1, "b"))
    return [AuditSource(audit_logs(a_root / "log"), a_root, "a"),
            AuditSource(audit_logs(b_root / "log"), b_root, "b")]


@pytest.mark.parametrize("asked", ["acme/in/x.dat", SHA_X, SHA_X[:12]])
def test_history_follows_the_file_along_a_chain_by_its_bytes(tmp_path, asked):
    sources = chained(tmp_path / "a", tmp_path / "b")
    records = file_history(sources, parse_query(asked, tmp_path / "a"))
    on_b = [(record["event"], record["file"]) for record in records
            if record["instance"] == "b"]
    # B's own file under the asked name is B's history only when asked by that path.
    assert on_b[:2] == [("scan", "from-a/x.dat"), ("webhook", "from-a/x.dat")]
    assert on_b[2:] == ([("scan", "acme/in/x.dat")] if asked == "acme/in/x.dat" else [])
    a_events = [(record["event"], record.get("verdict")) for record in records
                if record["instance"] == "a"]
    assert a_events == X_EVENTS
    times = [record["time"] for record in records]
    assert times == sorted(times)


def test_lines_across_read_chunks_are_found_whole(tmp_path, monkeypatch):
    """The logs are searched a chunk at a time: a line across chunks (or longer than one)
    is still found, once."""
    monkeypatch.setattr(audit_history, "_CHUNK", 37)
    write_log(tmp_path, [*x_history(tmp_path), *others(tmp_path)])
    records = history(audit_logs(tmp_path / "log"),
                           parse_query("acme/in/x.dat", tmp_path), tmp_path)
    assert events(records) == X_EVENTS


def test_a_line_cut_short_is_passed_over(tmp_path):
    lines = x_history(tmp_path)
    write_log(tmp_path, [lines[0], lines[1][:40] + "\n", *lines[2:]])
    records = history(audit_logs(tmp_path / "log"),
                           parse_query("acme/in/x.dat", tmp_path), tmp_path)
    assert len(records) == len(X_EVENTS) - 1


def test_names_with_odd_characters_match_as_json_spells_them(tmp_path):
    name = "acme/in/é \"q\"\nx.dat"
    write_log(tmp_path, [scan(tmp_path, name, SHA_X, "clean", f"clean/{name}")])
    records = history(audit_logs(tmp_path / "log"), parse_query(name, tmp_path), tmp_path)
    assert len(records) == 1
    line = format_record(records[0])
    assert "\n" not in line and 'file="acme/in/é \\"q\\"\\nx.dat"' in line


@pytest.mark.parametrize("bad", ["x.dat", "abc123", "a1" * 33, "acme/../etc/passwd", ""])
def test_bad_input_is_refused(tmp_path, bad):
    with pytest.raises(InvalidValueError):
        parse_query(bad, tmp_path)


def test_name_key(tmp_path):
    assert name_key(f"{tmp_path}/staging/acme/x", tmp_path) == "acme/x"
    assert name_key("clean/acme/x", tmp_path) == "acme/x"
    assert name_key("quarantine/acme/x", tmp_path) == "quarantine/acme/x"
    assert name_key(f"{tmp_path}/uploadarchive/acme/x", tmp_path) == "uploadarchive/acme/x"


def test_text_line_shows_time_event_and_the_fields_that_are_set():
    record = json.loads(scan(Path("/d"), "acme/y", SHA_Y, "infected", "quarantine/acme/y",
                             signature="Eicar-Test-Signature"))
    line = format_record(record)
    assert line.startswith(record["time"] + "  scan      file=acme/y verdict=infected "
                           "signature=Eicar-Test-Signature destination=quarantine/acme/y "
                           f"sha256={SHA_Y} size=68 ")
    assert "flow_run_id=run-1" in line and 'detail=""' in line and "level=" not in line


def ssftp_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSFTP, "status", *args], capture_output=True, text=True, timeout=60)


def test_status_command(tmp_path):
    write_log(tmp_path, [*x_history(tmp_path), *others(tmp_path)])
    data = ["--data-dir", str(tmp_path)]

    text = ssftp_status("clean/acme/in/x.dat", *data)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [event for event, _ in X_EVENTS]
    assert "verdict=clean" in lines[2] and "flow_run_id=run-2" in lines[2]

    as_json = ssftp_status(SHA_Y, "--json", *data)
    assert as_json.returncode == 0, as_json.stderr
    assert events(json.loads(as_json.stdout)) == [("scan", "infected"), ("webhook", None)]

    missing = ssftp_status("acme/in/z.dat", *data)
    assert (missing.returncode, missing.stdout) == (1, "")

    for args, reason in [(["x.dat", *data], "neither a sha256 nor a path"),
                         ([SHA_X[:12], *data], "give more digits"),
                         (["acme/x", "--data-dir", str(tmp_path / "none")], "no data dir at"),
                         (["acme/x", "--data-dir", str(tmp_path / "log")], "no audit.log in")]:
        bad = ssftp_status(*args)
        assert bad.returncode == 2 and bad.stderr.startswith("ssftp status: ")
        assert reason in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_status_shows_hostile_names_escaped(tmp_path):
    """Partners choose the names in the audit log: a terminal escape (ESC, BEL, the C1 CSI)
    and a byte that is not UTF-8 (its JSON has ``\\udcff``) are shown escaped, by path and
    by sha256, and the text never raises."""
    name = "acme/in/\x1b]0;PWNED\x07-\x9b31m-\udcff.dat"
    write_log(tmp_path, [scan(tmp_path, name, SHA_X, "infected", f"quarantine/{name}",
                              signature="Eicar-Test-Signature")])
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    for asked in (SHA_X, f"quarantine/{name}"):
        result = subprocess.run([SSFTP, "status", os.fsencode(asked), "--data-dir",
                                 str(tmp_path)], capture_output=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        for control in (b"\x1b", b"\x07", b"\x9b", b"\xc2\x9b"):
            assert control not in result.stdout + result.stderr
        assert b' file="acme/in/\\x1b]0;PWNED\\x07-\\x9b31m-\\xff.dat" ' in result.stdout


def test_status_command_over_two_data_dirs(tmp_path):
    chained(tmp_path / "a", tmp_path / "b")
    data = ["--data-dir", str(tmp_path / "a"), "--data-dir", str(tmp_path / "b")]
    both = ssftp_status(SHA_X, *data)
    assert both.returncode == 0, both.stderr
    assert [line.split()[1] for line in both.stdout.splitlines()] == [
        "download", "scan", "scan", "webhook", "upload", "scan", "webhook"]
    # Without a config, a record that names no instance gets the name the others give.
    assert both.stdout.splitlines()[-1].endswith("instance=b")

    bad = ssftp_status(SHA_X, *data, "--config", str(tmp_path / "a.yaml"))
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    assert "--config goes with one --data-dir" in bad.stderr


def test_a_reader_that_goes_away_is_not_an_error(tmp_path):
    """``ssftp status ... | head -n 1``: on main, 'ssftp status: [Errno 32] Broken pipe' and
    exit 2 once the history outgrew the pipe."""
    write_log(tmp_path, [scan(tmp_path, "acme/in/x.dat", SHA_X, "error", "staging/acme/in/x.dat")
                         for _ in range(5000)])
    piped = subprocess.run(
        ["bash", "-c", f"{shlex.quote(SSFTP)} status acme/in/x.dat --data-dir "
                       f"{shlex.quote(str(tmp_path))} | head -n 1; exit ${{PIPESTATUS[0]}}"],
        capture_output=True, text=True, timeout=60)
    assert (piped.returncode, piped.stderr) == (0, "")
    assert len(piped.stdout.splitlines()) == 1


def test_status_reads_a_log_dest_when_the_data_root_has_no_log(tmp_path):
    """A split deployment: the audit log shipped to a logDests file destination."""
    shipped = tmp_path / "shipped"
    write_log(shipped, x_history(tmp_path))
    config = write_config(tmp_path / "ssftp.yaml", f"""
    logDests:
      - kind: file
        props:
          path: {shipped / "log"}
    """)
    data = ["--data-dir", str(tmp_path), "--config", str(config)]
    found = ssftp_status("acme/in/x.dat", *data)
    assert found.returncode == 0, found.stderr
    assert len(found.stdout.splitlines()) == len(X_EVENTS)
    missing = ssftp_status("acme/in/x.dat", "--data-dir", str(tmp_path))
    assert missing.returncode == 2 and "no audit.log in" in missing.stderr


# --- end to end: the records a real gateway wrote (sftp uploads, clamd, Prefect, webhooks) ---


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("status")
    receiver = WebhookReceiver()
    clamd = ClamdDaemon.start(root / "clamd", database=TEST_SIGNATURES)
    config = write_config(root / "ssftp.yaml", pipeline_config(clamd.socket, receiver))
    server = ServerThread(config, root / "data")
    stack = Pipeline(root, DataLayout.at(root / "data"), config, server, receiver,
                     root / "clamd", clamd)
    stack.start_worker()
    yield stack
    for worker in stack.workers:
        worker.stop(timeout=30)
    server.stop()
    clamd.stop()
    receiver.stop()


def test_status_of_files_through_a_real_gateway(pipeline: Pipeline, workdir: Path):
    (workdir / "eicar.com").write_bytes(EICAR)
    make_random_file(workdir / "report.csv", 10_000)
    pipeline.upload(workdir, ["mkdir in", "put eicar.com in/eicar.com",
                              "put report.csv in/report.csv"])
    infected = "partner-a/in/eicar.com"
    wait_for(lambda: len([r for r in pipeline.audit() if r["event"] == "webhook"
                          and r["file"] == infected]) == 2,
             "both virusFound webhooks settled in the audit log")
    wait_for(pipeline.clean("in/report.csv").exists, "report.csv in clean")
    data = ["--data-dir", str(pipeline.layout.root), "--config", str(pipeline.config)]

    by_sha = ssftp_status(hashlib.sha256(EICAR).hexdigest(), "--json", *data)
    assert by_sha.returncode == 0, by_sha.stderr
    scan_record, *webhooks = json.loads(by_sha.stdout)
    assert (scan_record["verdict"], scan_record["destination"]) == (
        "infected", f"quarantine/{infected}")
    assert scan_record["signature"].endswith(".UNOFFICIAL") and scan_record["flow_run_id"]
    assert sorted(hook["delivered"] for hook in webhooks) == [False, True]

    by_path = ssftp_status(f"quarantine/{infected}", *data)
    assert by_path.returncode == 0, by_path.stderr
    assert [line.split()[1] for line in by_path.stdout.splitlines()] == [
        "scan", "webhook", "webhook"]
    assert f"signature={scan_record['signature']}" in by_path.stdout

    clean = ssftp_status("clean/partner-a/in/report.csv", *data)
    assert clean.returncode == 0, clean.stderr
    assert "verdict=clean" in clean.stdout
    assert f"sha256={sha256_file(workdir / 'report.csv')}" in clean.stdout
