"""Quarantine as an operator sees it: the names an operator may give (hostile input, held to
quarantine/), the list read from the verdict records, and delete."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

from ssftp.areas.quarantine import (
    delete,
    entries,
    format_entry,
    history_name,
    parse_name,
    record_name,
)
from ssftp.errors import NotInQuarantineError
from ssftp.scan.clamd import ClamdClient
from testkit.files import EICAR
from tests.support.logs import json_lines
from tests.support.quarantine import quarantined
from tests.support.scanning import sha256


@pytest.mark.parametrize("text", ["quarantine/acme/x.pdf", "acme/x.pdf", "{root}/acme/x.pdf"])
def test_a_name_as_list_shows_it_or_inside_quarantine_is_taken(layout, text):
    given = text.format(root=layout.quarantine)
    assert parse_name(given, layout) == PurePosixPath("acme/x.pdf")


@pytest.mark.parametrize("text", [
    "", "quarantine", "../clean/acme/x.pdf", "acme/../../clean/x.pdf", "/etc/passwd",
    "{root}/../clean/x.pdf", ".ssftp-claims/x", "acme/.SSFTP-tmp-1", "acme/x\0y",
])
def test_a_name_outside_quarantine_is_refused_in_one_line(layout, text):
    with pytest.raises(NotInQuarantineError) as refused:
        parse_name(text.format(root=layout.quarantine), layout)
    assert "\n" not in str(refused.value)


def test_list_shows_each_file_with_its_record_and_one_without_as_such(layout, fake_clamd,
                                                                       audit_log):
    client = ClamdClient(fake_clamd.address, timeout=10)
    quarantined(layout, client, "acme/in/x.pdf", EICAR)
    bare = layout.quarantine / "acme" / "bare.txt"
    bare.write_bytes(b"left by hand")
    history = layout.quarantine / "acme" / history_name("old.pdf", datetime.now(UTC),
                                                       "released")
    history.write_text("{}")
    (layout.quarantine / ".ssftp-tmp-x").write_bytes(b"ours")

    listed = {entry.name.as_posix(): entry for entry in entries(layout)}

    assert sorted(listed) == ["acme/bare.txt", "acme/in/x.pdf"]
    infected = listed["acme/in/x.pdf"].as_dict()
    assert infected["account"] == "acme"
    assert infected["signature"] == "Eicar-Test-Signature"
    assert infected["sha256"] == sha256(EICAR)
    assert infected["size"] == len(EICAR)
    assert infected["record"] is True
    assert listed["acme/bare.txt"].as_dict()["record"] is False
    assert "(record missing)" in format_entry(listed["acme/bare.txt"])


def test_a_partners_file_named_like_a_record_is_listed_when_it_has_its_own(layout, fake_clamd,
                                                                          audit_log):
    client = ClamdClient(fake_clamd.address, timeout=10)
    quarantined(layout, client, "acme/x.verdict.json", EICAR)
    assert [entry.name.as_posix() for entry in entries(layout)] == ["acme/x.verdict.json"]


def test_delete_removes_the_file_and_its_record_after_an_audit_record(layout, fake_clamd,
                                                                     audit_log):
    client = ClamdClient(fake_clamd.address, timeout=10)
    path = quarantined(layout, client, "acme/x.pdf", EICAR)

    delete(layout, PurePosixPath("acme/x.pdf"), reason="malware, confirmed", operator="ann")

    assert not path.exists()
    assert not path.with_name(record_name(path.name)).exists()
    record = json_lines(audit_log)[-1]
    assert record["event"] == "delete"
    assert (record["reason"], record["operator"]) == ("malware, confirmed", "ann")
    assert record["source"] == "quarantine/acme/x.pdf"
    assert record["sha256"] == sha256(EICAR)


def test_delete_never_follows_a_symlinked_directory_out_of_quarantine(layout, tmp_path,
                                                                     audit_log):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.pdf").write_bytes(b"not quarantine's")
    os.symlink(outside, layout.quarantine / "acme")

    with pytest.raises(NotInQuarantineError):
        delete(layout, PurePosixPath("acme/x.pdf"), reason="r", operator="ann")

    assert (outside / "x.pdf").read_bytes() == b"not quarantine's"
    assert not audit_log.exists() or json_lines(audit_log) == []


def test_a_verdict_record_is_not_a_file_to_delete(layout, fake_clamd, audit_log):
    client = ClamdClient(fake_clamd.address, timeout=10)
    path = quarantined(layout, client, "acme/x.pdf", EICAR)

    with pytest.raises(NotInQuarantineError, match="verdict record"):
        delete(layout, PurePosixPath("acme") / record_name("x.pdf"), reason="r",
               operator="ann")
    assert path.exists()


@pytest.mark.parametrize("reason", ["", "   ", "two\nlines"])
def test_a_blank_or_multi_line_reason_is_refused(layout, fake_clamd, audit_log, reason):
    client = ClamdClient(fake_clamd.address, timeout=10)
    path = quarantined(layout, client, "acme/x.pdf", EICAR)
    with pytest.raises(ValueError, match="--reason"):
        delete(layout, PurePosixPath("acme/x.pdf"), reason=reason, operator="ann")
    assert path.exists()
