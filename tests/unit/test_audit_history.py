"""ssftp.audit_history: a file's history from the audit log, what ``ssftp status PATH|SHA256``
prints (the command itself, as a user runs it, is in tests/e2e/test_status.py).

The audit lines are made by the audit log's own formatter, so they are spelt as the running
gateway spells them: one file's life across its names (an absolute staging path for a download,
the staging sub path for a scan and a webhook, clean/ and quarantine/ destinations, an upload's
path in clean/), rotated and gzipped logs, a chain of two instances joined by the file's bytes."""

from __future__ import annotations

import json
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
from tests.support.audit_log import (
    SHA_X,
    SHA_X2,
    SHA_Y,
    X_EVENTS,
    chained,
    events,
    others,
    scan,
    write_log,
    x_history,
)


def history(logs: list[Path], query: Query, root: Path) -> list[dict[str, Any]]:
    """One instance's history, as ``ssftp status --data-dir`` reads it."""
    return file_history([AuditSource(logs, root, "a")], query)


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
