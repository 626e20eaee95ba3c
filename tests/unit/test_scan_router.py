"""ssftp.scan.router: where each verdict sends a claimed file (clean/ replacing an older file,
quarantine/ never replacing and keeping a record, back to staging) under its sub path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssftp.layout import DataLayout
from ssftp.scan.claims import (
    Claims,
    reserve_quarantine_name,
)
from ssftp.scan.results import Area
from ssftp.scan.router import (
    VERDICT_RECORD_SUFFIX,
    Route,
    quarantine_names,
    record_content,
    record_path,
    route_for,
)
from ssftp.scan.verdict import VerdictKind
from tests.support.scanning import ODD_SUB_PATH, files_under, stage

# --- verdict router -------------------------------------------------------------------------


def quarantine(layout: DataLayout, claim, verdict: VerdictKind, record: dict) -> Path:
    """What the scanner does with a quarantine verdict: the first name its record reserves
    (the record names where the file goes), then the move."""
    route = route_for(verdict, claim.sub_path, layout)
    assert route.area is Area.QUARANTINE
    for target in quarantine_names(route.target):
        content = record_content(
            {**record, "destination": target.relative_to(layout.root).as_posix()})
        if reserve_quarantine_name(target, record_path(target), content):
            return claim.quarantine(target, record_path(target))
    raise AssertionError("unreachable")


def test_clean_replaces_an_older_clean_file(layout):
    older = layout.clean / ODD_SUB_PATH
    older.parent.mkdir(parents=True)
    older.write_bytes(b"old clean")
    area = Claims(layout.staging)
    claim = area.claim(stage(layout, ODD_SUB_PATH, b"new clean"))
    route = route_for(VerdictKind.CLEAN, claim.sub_path, layout)
    assert route == Route(Area.CLEAN, older)
    with older.open("rb") as reader:  # a consumer mid-download
        assert claim.move_to(route.target) == older
        assert reader.read() == b"old clean"
    assert older.read_bytes() == b"new clean"
    assert not claim.path.exists()
    assert area.held() == [] and not list(area.directory.rglob("*"))
    assert files_under(layout.quarantine) == []


@pytest.mark.parametrize("verdict", [VerdictKind.INFECTED, VerdictKind.UNSCANNABLE])
def test_quarantine_never_replaces_and_keeps_a_record(layout, verdict):
    area = Claims(layout.staging)
    places = []
    for number in (1, 2, 3):
        claim = area.claim(stage(layout, ODD_SUB_PATH, f"evidence {number}".encode()))
        record = {"number": number, "verdict": verdict.value, "file": ODD_SUB_PATH}
        places.append(quarantine(layout, claim, verdict, record))
    directory = layout.quarantine / "partner-a" / "in dir"
    assert places == [directory / "Q1: rapport ünï ✓.txt",
                      directory / "Q1: rapport ünï ✓ (2).txt",
                      directory / "Q1: rapport ünï ✓ (3).txt"]
    for number, place in enumerate(places, start=1):
        assert place.read_bytes() == f"evidence {number}".encode()
        record = place.with_name(place.name + VERDICT_RECORD_SUFFIX)
        assert json.loads(record.read_text(encoding="utf-8")) == {
            "number": number, "verdict": verdict.value, "file": ODD_SUB_PATH,
            "destination": place.relative_to(layout.root).as_posix()}
    assert len(files_under(layout.quarantine)) == 6  # no temp files left
    assert files_under(layout.clean) == []
    assert area.held() == []


def test_an_upload_named_like_a_record_does_not_replace_the_record(layout):
    area = Claims(layout.staging)
    first = quarantine(layout, area.claim(stage(layout, "partner-a/x", b"x")),
                       VerdictKind.INFECTED, {"which": "x"})
    second = quarantine(layout, area.claim(stage(layout, "partner-a/x.verdict.json",
                                                 b"fake record")),
                        VerdictKind.INFECTED, {"which": "upload"})
    assert first == layout.quarantine / "partner-a" / "x"
    assert second == layout.quarantine / "partner-a" / "x.verdict (2).json"
    record = layout.quarantine / "partner-a" / "x.verdict.json"
    assert json.loads(record.read_text()) == {"which": "x",
                                              "destination": "quarantine/partner-a/x"}
    assert second.read_bytes() == b"fake record"


def test_error_goes_back_to_staging(layout):
    staged = stage(layout, "partner-a/a b/c: d.txt", b"retry me")
    area = Claims(layout.staging)
    claim = area.claim(staged)
    route = route_for(VerdictKind.ERROR, claim.sub_path, layout)
    assert route == Route(Area.STAGING, staged)
    assert claim.release() == staged
    assert staged.read_bytes() == b"retry me"
    assert files_under(layout.clean) == [] and files_under(layout.quarantine) == []
    assert area.held() == []
