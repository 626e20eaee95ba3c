"""A release from quarantine against a fake clamd: what the rescan lets go, what is refused
(also with --force), the record before the move, and a move that never replaces."""

from __future__ import annotations

import errno
import os
from pathlib import PurePosixPath

import pytest

from ssftp.areas.quarantine import record_name
from ssftp.areas.release import Releaser, Request
from ssftp.errors import AuditLogError, ClamdError, ReleaseRefusedError, SsftpError
from ssftp.notify.outbox import Outbox
from ssftp.scan.clamd import ClamdClient
from testkit.fake_clamd import scans
from testkit.files import EICAR
from tests.support.logs import json_lines
from tests.support.quarantine import quarantine_config, quarantined
from tests.support.scanning import files_under, sha256

NAME = PurePosixPath("acme/x.pdf")


@pytest.fixture
def releaser(layout, fake_clamd):
    outbox = Outbox(layout.outbox)
    yield Releaser(layout, ClamdClient(fake_clamd.address, timeout=10), mode="auto",
                   outbox=outbox, config=quarantine_config("http://127.0.0.1:9/released"))
    outbox.close()


@pytest.fixture
def infected(layout, releaser, audit_log):
    """EICAR in quarantine as acme/x.pdf, beside its verdict record."""
    return quarantined(layout, releaser.client, "acme/x.pdf", EICAR)


def owed(releaser):
    return releaser.outbox.owed(now=float("inf"), limit=10)


def test_a_file_still_detected_is_refused_and_stays(layout, releaser, infected, audit_log):
    rescan = releaser.rescan(NAME)
    with pytest.raises(ReleaseRefusedError, match="Eicar-Test-Signature"):
        releaser.check(rescan, force=False)
    assert infected.read_bytes() == EICAR
    assert files_under(layout.clean) == []


def test_force_releases_it_with_the_record_first_and_the_verdict_record_as_history(
        layout, releaser, infected, audit_log):
    rescan = releaser.rescan(NAME)
    releaser.check(rescan, force=True)

    released = releaser.release(rescan, Request("vendor says benign", "ann", force=True))

    assert (layout.clean / NAME).read_bytes() == EICAR
    assert not infected.exists()
    assert not infected.with_name(record_name(infected.name)).exists()
    [history] = [p for p in files_under(layout.quarantine) if ".released-" in p.name]
    assert history.name.startswith("x.pdf.released-")
    assert history.name.endswith(".verdict.json")
    record = json_lines(audit_log)[-1]
    assert record["event"] == "release"
    assert (record["reason"], record["operator"], record["forced"]) == (
        "vendor says benign", "ann", True)
    assert record["quarantined_signature"] == "Eicar-Test-Signature"
    assert (record["source"], record["destination"]) == ("quarantine/acme/x.pdf",
                                                         "clean/acme/x.pdf")
    assert record["sha256"] == sha256(EICAR)
    assert [n.event for n in released.notifications] == ["released"]
    assert owed(releaser) == [released.notifications[0].id]
    assert released.event == "ssftp.file.released"


def test_a_false_positive_is_released_without_force(layout, releaser, fake_clamd, infected,
                                                    audit_log):
    fake_clamd.answer = scans(b"fd[9]: OK")  # newer signatures no longer detect it
    rescan = releaser.rescan(NAME)
    releaser.check(rescan, force=False)
    releaser.release(rescan, Request("false positive", "ann"))
    assert (layout.clean / NAME).read_bytes() == EICAR
    assert json_lines(audit_log)[-1]["forced"] is False


@pytest.mark.parametrize("force", [False, True])
def test_a_rescan_without_a_verdict_refuses_also_with_force(releaser, fake_clamd, infected,
                                                            force):
    fake_clamd.answer = scans(b"fd[9]: Can't allocate memory ERROR")
    rescan = releaser.rescan(NAME)
    with pytest.raises(ClamdError, match="also with --force"):
        releaser.check(rescan, force=force)
    assert infected.exists()


def test_a_name_taken_in_clean_is_never_replaced(layout, releaser, infected, audit_log):
    newer = layout.clean / NAME
    newer.parent.mkdir(parents=True)
    newer.write_bytes(b"a newer upload")
    rescan = releaser.rescan(NAME)

    with pytest.raises(SsftpError, match="exists"):
        releaser.release(rescan, Request("r", "ann", force=True))

    assert newer.read_bytes() == b"a newer upload"
    assert infected.read_bytes() == EICAR
    assert infected.with_name(record_name(infected.name)).exists()
    assert owed(releaser) == []


def test_without_its_audit_record_nothing_moves_and_no_webhook_is_owed(
        layout, releaser, infected, audit_log, monkeypatch):
    def full_disk(*args, **kwargs):
        raise AuditLogError("audit record not written to audit.log (No space left on device)")

    monkeypatch.setattr("ssftp.areas.release.write_audit_event", full_disk)
    rescan = releaser.rescan(NAME)
    with pytest.raises(SsftpError, match="not released"):
        releaser.release(rescan, Request("r", "ann", force=True))
    assert infected.read_bytes() == EICAR
    assert files_under(layout.clean) == []
    assert owed(releaser) == []


def test_a_file_changed_since_its_rescan_does_not_move(layout, releaser, infected, audit_log):
    rescan = releaser.rescan(NAME)
    infected.write_bytes(b"other bytes")
    with pytest.raises(SsftpError, match="changed since its rescan"):
        releaser.release(rescan, Request("r", "ann", force=True))
    assert files_under(layout.clean) == []


def test_a_symlink_in_quarantine_is_never_followed(layout, releaser, tmp_path, audit_log):
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    (layout.quarantine / "acme").mkdir()
    os.symlink(secret, layout.quarantine / NAME)
    with pytest.raises(SsftpError, match="delete it instead"):
        releaser.rescan(NAME)
    assert files_under(layout.clean) == []


def test_across_filesystems_it_is_copied_whole_and_never_replaces(layout, releaser, infected,
                                                                  audit_log, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    rescan = releaser.rescan(NAME)
    releaser.release(rescan, Request("r", "ann", force=True))
    assert (layout.clean / NAME).read_bytes() == EICAR
    assert not infected.exists()
    assert [p.name for p in files_under(layout.clean)] == ["x.pdf"]
