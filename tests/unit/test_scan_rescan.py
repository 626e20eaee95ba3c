"""ssftp.scan.rescan without a real clamd: a handed-on file that the (fake) clamd now detects
leaves clean/ for quarantine/ with its verdict record, and only if it is the very file that was
scanned; a file that stays clean gets its record; a reader holding the file reads it whole;
quarantine/ is only reported on; a rescan that stopped while holding a file finishes it.
The rescan against a real clamd and a real signature update, through the worker and the CLI,
is in tests/e2e/test_rescan.py."""

from __future__ import annotations

import json
import os

import pytest

from ssftp.layout import RESCAN_HOLD_DIR
from ssftp.scan import rescan as rescan_module
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.record import AuditRecorder
from ssftp.scan.rescan import (
    Rescanner,
    handed_on_files,
    remember_rescanned,
    rescanned_for,
)
from ssftp.scan.results import Area
from ssftp.scan.router import VERDICT_RECORD_SUFFIX
from testkit.fake_clamd import like_clamd, scans
from tests.support.logs import json_lines
from tests.support.scanning import files_under, write

NEW_MALWARE = b"harmless until today's signatures"


def detects_new_malware(request):
    """A clamd whose signatures were updated: it now finds NEW_MALWARE."""
    if request.data is not None and NEW_MALWARE in request.data:
        return f"{request.name}: Site.New-1 FOUND".encode()
    return like_clamd(request)


def rescanner(layout, owners, fake) -> Rescanner:
    return Rescanner(layout, ClamdClient(fake.address, timeout=30), AuditRecorder(), owners,
                     "gw-test", worker="rescanner-1")


def test_a_clean_file_now_detected_moves_to_quarantine_and_the_rest_stays(
        layout, owners, fake_clamd, audit_log):
    fake_clamd.answer = scans(detects_new_malware)
    bad = write(layout.clean / "partner-a" / "in" / "report.pdf", NEW_MALWARE)
    good = write(layout.clean / "partner-a" / "in" / "notes.txt", b"still fine")
    looker = rescanner(layout, owners, fake_clamd)
    moved, stayed = looker.rescan(bad, "run-9"), looker.rescan(good, "run-9")
    assert (moved.verdict, moved.area, moved.signature, moved.reason) == (
        "infected", Area.QUARANTINE, "Site.New-1", "rescan")
    assert (moved.source, moved.destination) == ("clean/partner-a/in/report.pdf",
                                                 "quarantine/partner-a/in/report.pdf")
    assert (moved.account, moved.database) == ("partner-a", "27000")
    assert (layout.quarantine / "partner-a" / "in" / "report.pdf").read_bytes() == NEW_MALWARE
    record = json.loads((layout.quarantine / "partner-a" / "in" /
                         ("report.pdf" + VERDICT_RECORD_SUFFIX)).read_text())
    assert (record["reason"], record["signature"], record["database"]) == (
        "rescan", "Site.New-1", "27000")
    assert record["worker"] == moved.worker == stayed.worker == "rescanner-1"
    assert files_under(layout.clean) == [good] and good.read_bytes() == b"still fine"
    assert (stayed.verdict, stayed.area, stayed.destination) == ("clean", Area.CLEAN,
                                                                 "clean/partner-a/in/notes.txt")
    assert [(event["event"], event["file"], event["verdict"], event["database"],
             event["worker"]) for event in json_lines(audit_log)] == [
        ("rescan", "partner-a/in/report.pdf", "infected", "27000", "rescanner-1"),
        ("rescan", "partner-a/in/notes.txt", "clean", "27000", "rescanner-1")]


def test_a_reader_holding_the_file_reads_it_whole(layout, owners, fake_clamd):
    fake_clamd.answer = scans(detects_new_malware)
    data = NEW_MALWARE + os.urandom(1 << 20)
    bad = write(layout.clean / "partner-a" / "big.bin", data)
    with bad.open("rb") as reader:
        head = reader.read(1000)
        assert rescanner(layout, owners, fake_clamd).rescan(bad).area is Area.QUARANTINE
        assert head + reader.read() == data


def test_a_file_that_changes_under_the_scan_is_looked_at_again_not_moved(
        layout, owners, fake_clamd):
    """The first look sees the file replaced by a newer clean one during its scan: that look
    is void, and the second look, at the newer file, keeps it."""
    bad = write(layout.clean / "partner-a" / "x.csv", NEW_MALWARE)

    def replaced_during_the_scan(request):
        if request.data == NEW_MALWARE:
            write(layout.clean / "partner-a" / ".ssftp-tmp-new", b"a newer, clean upload")
            os.replace(layout.clean / "partner-a" / ".ssftp-tmp-new", bad)
        return detects_new_malware(request)

    fake_clamd.answer = scans(replaced_during_the_scan)
    result = rescanner(layout, owners, fake_clamd).rescan(bad)
    assert (result.verdict, result.area) == ("clean", Area.CLEAN)
    assert bad.read_bytes() == b"a newer, clean upload"
    assert files_under(layout.quarantine) == []


def test_a_file_replaced_between_its_scan_and_its_move_is_not_moved(
        layout, owners, fake_clamd, monkeypatch):
    """The window between the verdict and taking the file out of clean/ cannot be hit on cue
    from outside, so the test widens it: the real examine, then a newer clean upload takes
    the name. What is taken out is not what was scanned: it goes back, and is looked at in
    turn (and kept)."""
    bad = write(layout.clean / "partner-a" / "x.csv", NEW_MALWARE)
    fake_clamd.answer = scans(detects_new_malware)
    real_examine = rescan_module.examine

    def examine_then_replace(path, client, mode, policy):
        examined = real_examine(path, client, mode, policy)
        if path.read_bytes() == NEW_MALWARE:
            write(path.with_name(".ssftp-tmp-new"), b"a newer, clean upload")
            os.replace(path.with_name(".ssftp-tmp-new"), path)
        return examined

    monkeypatch.setattr(rescan_module, "examine", examine_then_replace)
    result = rescanner(layout, owners, fake_clamd).rescan(bad)
    assert (result.verdict, result.area) == ("clean", Area.CLEAN)
    assert bad.read_bytes() == b"a newer, clean upload"
    assert files_under(layout.quarantine) == []
    assert list((layout.clean / RESCAN_HOLD_DIR).iterdir()) == []


def test_a_rescan_of_quarantine_reports_what_is_no_longer_detected_and_moves_nothing(
        layout, owners, fake_clamd):
    held = write(layout.quarantine / "partner-a" / "false-positive.doc", b"now fine")
    write(layout.quarantine / "partner-a" / ("false-positive.doc" + VERDICT_RECORD_SUFFIX), b"{}")
    still = write(layout.quarantine / "partner-a" / "bad.bin", NEW_MALWARE)
    fake_clamd.answer = scans(detects_new_malware)
    looker = rescanner(layout, owners, fake_clamd)
    found = [looker.rescan(path) for path in handed_on_files(layout, Area.QUARANTINE)]
    assert [(r.file, r.verdict, r.area) for r in found] == [
        ("partner-a/bad.bin", "infected", Area.QUARANTINE),
        ("partner-a/false-positive.doc", "clean", Area.QUARANTINE)]
    assert held.read_bytes() == b"now fine" and still.read_bytes() == NEW_MALWARE
    assert files_under(layout.clean) == []


def test_handed_on_files_are_regular_files_outside_ssftps_own_names(layout):
    write(layout.clean / "partner-a" / "a.txt", b"a")
    write(layout.clean / "partner-a" / ".ssftp-tmp-x", b"temp")
    write(layout.clean / "partner-a" / "up.filepart", b"in progress")
    write(layout.clean / RESCAN_HOLD_DIR / "0123", b"held")
    (layout.clean / "partner-a" / "link").symlink_to("/etc/passwd")
    assert [p.name for p in handed_on_files(layout, Area.CLEAN)] == ["a.txt"]


def test_a_held_file_left_by_a_stopped_rescan_is_finished(layout, owners, fake_clamd):
    """A rescan that died after taking a file out of clean/ left it held, out of reach, with
    a note of its name: the next rescan quarantines it (or gives a clean one its name back)."""
    hold = layout.clean / RESCAN_HOLD_DIR
    write(hold / "00aa", NEW_MALWARE)
    write(hold / "00aa.json", json.dumps({"name": "partner-a/x.pdf"}).encode())
    write(hold / "00bb", b"fine")
    write(hold / "00bb.json", json.dumps({"name": "partner-a/y.txt"}).encode())
    fake_clamd.answer = scans(detects_new_malware)
    results = rescanner(layout, owners, fake_clamd).recover(Area.CLEAN)
    assert [(r.file, r.area) for r in results] == [("partner-a/x.pdf", Area.QUARANTINE),
                                                   ("partner-a/y.txt", Area.CLEAN)]
    assert (layout.quarantine / "partner-a" / "x.pdf").read_bytes() == NEW_MALWARE
    assert (layout.clean / "partner-a" / "y.txt").read_bytes() == b"fine"
    assert list(hold.iterdir()) == []


@pytest.mark.parametrize("record", [None, "not json", '{"signatures": 7}'])
def test_which_signatures_were_rescanned_for_is_unknown_until_remembered(layout, record):
    if record is not None:
        write(layout.system / "rescan.json", record.encode())
    assert rescanned_for(layout) is None
    remember_rescanned(layout, "ClamAV 1.4.6/27480+0a1b")
    assert rescanned_for(layout) == "ClamAV 1.4.6/27480+0a1b"


def test_a_held_files_note_that_names_a_place_outside_its_area_is_not_followed(
        layout, owners, fake_clamd):
    hold = layout.clean / RESCAN_HOLD_DIR
    write(hold / "00cc", b"held")
    write(hold / "00cc.json", json.dumps({"name": "../../system/ssftp.yaml"}).encode())
    assert rescanner(layout, owners, fake_clamd).recover(Area.CLEAN) == []
    assert (hold / "00cc").read_bytes() == b"held"  # left held, out of reach
    assert not (layout.system / "ssftp.yaml").exists()
