"""ssftp.scan.policy and ssftp.scan.filetypes: what an owner's files may be besides free of
malware, and their true type read from the content (libmagic, a library: no daemon)."""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from ssftp.config.schema import SsftpConfig
from ssftp.scan import filetypes
from ssftp.scan.clamd import parse_reply
from ssftp.scan.examine import examine
from ssftp.scan.filetypes import file_type
from ssftp.scan.owners import StagingOwners
from ssftp.scan.policy import FILE_TYPE_SIGNATURE, ContentPolicy
from ssftp.scan.verdict import Verdict, VerdictKind, finding
from testkit.files import EICAR

CLEAN = Verdict(VerdictKind.CLEAN, "OK")
ENCRYPTED = finding("Heuristics.Encrypted.Zip")
INFECTED = finding("Win.Test.EICAR_HDB-1")
ERROR = Verdict(VerdictKind.ERROR, "clamd error: x", unreachable=True)


@pytest.mark.parametrize(("signature", "kind", "detail"), [
    ("Heuristics.Encrypted.Zip", VerdictKind.UNSCANNABLE, "encrypted archive"),
    ("Heuristics.Encrypted.RAR", VerdictKind.UNSCANNABLE, "encrypted archive"),
    ("Heuristics.Encrypted.PDF", VerdictKind.UNSCANNABLE, "encrypted document"),
    ("Heuristics.Limits.Exceeded.MaxFileSize", VerdictKind.UNSCANNABLE, "scan limits exceeded"),
    ("Heuristics.Broken.Executable", VerdictKind.UNSCANNABLE, "broken executable"),
    ("Heuristics.Broken.Media.JPEG.EXIFHeaderNoFF", VerdictKind.UNSCANNABLE, "broken media"),
    ("Heuristics.Structured.CreditCardNumber", VerdictKind.BLOCKED, "structured data"),
    ("Win.Test.EICAR_HDB-1", VerdictKind.INFECTED, "Win.Test.EICAR_HDB-1 FOUND"),
])
def test_what_clamd_reports_it_found_means(signature, kind, detail):
    verdict = parse_reply(f"stream: {signature} FOUND\0".encode())
    assert verdict.kind is kind
    assert verdict.detail.startswith(detail)
    assert verdict.signature == signature
    assert verdict.encrypted == signature.startswith("Heuristics.Encrypted.")


def test_encrypted_files_are_unscannable_unless_allowed_and_then_marked_not_inspected():
    assert ContentPolicy().settle(ENCRYPTED, None) == ENCRYPTED
    passed = ContentPolicy(allow_encrypted=True).settle(ENCRYPTED, None)
    assert passed.kind is VerdictKind.CLEAN
    assert passed.inspected is False
    assert passed.detail.startswith("clean (encrypted, not inspected)")
    # Only encryption is let through: other unscannable answers and errors stay what they are.
    broken = finding("Heuristics.Broken.Executable")
    assert ContentPolicy(allow_encrypted=True).settle(broken, None) == broken
    assert ContentPolicy(allow_encrypted=True).settle(ERROR, None) == ERROR


@pytest.mark.parametrize(("policy", "file_type", "blocked"), [
    (ContentPolicy(allowed_types=("text/*",)), "text/csv", False),
    (ContentPolicy(allowed_types=("text/*",)), "application/x-executable", True),
    (ContentPolicy(allowed_types=("text/*", "application/pdf")), "application/pdf", False),
    (ContentPolicy(denied_types=("application/x-*executable",)), "application/x-executable",
     True),
    (ContentPolicy(denied_types=("application/x-*executable",)), "application/zip", False),
    # A denial wins over an allowance that also matches.
    (ContentPolicy(allowed_types=("application/*",), denied_types=("application/x-dosexec",)),
     "application/x-dosexec", True),
    (ContentPolicy(), "application/x-dosexec", False),
])
def test_file_types_are_judged_by_allow_and_deny_lists_with_wildcards(policy, file_type,
                                                                      blocked):
    verdict = policy.settle(CLEAN, file_type)
    assert (verdict.kind is VerdictKind.BLOCKED) == blocked
    if blocked:
        assert verdict.signature == FILE_TYPE_SIGNATURE + file_type


def test_malware_wins_over_policy_and_policy_over_a_scan_that_failed():
    """An infected file of a denied type is infected (virusFound for a virus, not "policy");
    a denied type is blocked even when clamd could not answer (its type alone keeps it out)."""
    denying = ContentPolicy(denied_types=("application/zip",), allow_encrypted=True)
    assert denying.settle(INFECTED, "application/zip") == INFECTED
    assert denying.settle(ERROR, "application/zip").kind is VerdictKind.BLOCKED
    assert denying.settle(ENCRYPTED, "application/zip").kind is VerdictKind.BLOCKED


def test_the_type_is_read_from_the_content_not_the_name(tmp_path: Path):
    shutil.copyfile("/bin/true", tmp_path / "report.csv")
    (tmp_path / "table.bin").write_bytes(b"id,name\n1,acme\n2,beta\n")
    with zipfile.ZipFile(tmp_path / "archive.txt", "w") as archive:
        archive.writestr("eicar.com", EICAR)
    (tmp_path / "empty").write_bytes(b"")
    found = {}
    for name in ("report.csv", "table.bin", "archive.txt", "empty"):
        fd = os.open(tmp_path / name, os.O_RDONLY)
        try:
            found[name] = file_type(fd)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0, "the descriptor's offset is untouched"
        finally:
            os.close(fd)
    assert found["report.csv"].startswith("application/x-")
    assert found["report.csv"].endswith(("executable", "sharedlib"))
    assert found["table.bin"].startswith("text/")
    assert found["archive.txt"] == "application/zip"
    assert found["empty"] == "application/x-empty"


def test_each_owner_has_its_rules_plus_the_global_denials():
    config = SsftpConfig.model_validate({
        "scanning": {"deniedFileTypes": ["application/x-dosexec"]},
        "users": {"stagingDir": [
            {"directory": "a", "allowedFileTypes": ["Text/*"], "allowEncrypted": True,
             "auth": {"username": "a", "password": "pw"}},
            {"directory": "b", "deniedFileTypes": ["application/zip"],
             "auth": {"username": "b", "password": "pw"}}]},
        "sftpClientDownloaders": [
            {"name": "d", "host": "h", "port": 22, "username": "u", "password": "p",
             "localStagingDirectory": "d", "allowEncrypted": True,
             "insecureIgnoreHostKey": True}]})
    owners = StagingOwners(config)
    assert owners.policy_for(PurePosixPath("a/x.csv")) == ContentPolicy(
        allow_encrypted=True, allowed_types=("text/*",),
        denied_types=("application/x-dosexec",))
    assert owners.policy_for(PurePosixPath("b/x")).denied_types == (
        "application/x-dosexec", "application/zip")
    assert owners.policy_for(PurePosixPath("d/x")).allow_encrypted is True
    assert owners.policy_for(PurePosixPath("nobody/x")) == ContentPolicy(
        denied_types=("application/x-dosexec",))


def test_without_libmagic_a_file_whose_type_is_judged_waits_and_is_never_passed(tmp_path,
                                                                                 monkeypatch):
    """libmagic missing cannot be caused for real here (bootstrap installs it): python-magic
    is made unimportable, as it is on a machine without it."""
    monkeypatch.setitem(sys.modules, "magic", None)
    monkeypatch.delattr(filetypes._local, "detector", raising=False)
    path = tmp_path / "report.csv"
    path.write_text("id,name\n1,acme\n")
    examined = examine(path, None, "auto", ContentPolicy(allowed_types=("text/*",)))
    assert examined.verdict.kind is VerdictKind.ERROR
    assert "libmagic is missing" in examined.verdict.detail
    # An owner without a type policy is not affected.
    assert examine(path, None, "auto").verdict.kind is VerdictKind.UNSCANNED
