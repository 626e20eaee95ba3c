"""ssftp.scan.icap against a real ICAP server: Debian's c-icap with its virus_scan service in
front of the session's clamd (the offline EICAR signatures). EICAR is infected with clamd's
name for it, clean files are clean (a large one too), an encrypted archive is unscannable as
from clamd, a file over clamd's limit is never clean; a stopped c-icap is an outage (an
unreachable error, never clean) and its restart is seen by ping and ``ssftp_icap_up``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.database import TEST_SIGNATURES
from ssftp.scan.icap import IcapClient
from ssftp.scan.verdict import Verdict, VerdictKind
from testkit.files import EICAR
from tests.support.icap import CIcap
from tests.support.metrics import sample
from tests.support.scanning import CLAMD_MAX_FILE_SIZE, write

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def c_icap(tmp_path_factory: pytest.TempPathFactory, clamd) -> Iterator[CIcap]:
    icap = CIcap.start(tmp_path_factory.mktemp("c-icap"), clamd.socket)
    yield icap
    icap.stop()


@pytest.fixture(scope="module")
def roomy_c_icap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CIcap]:
    """A c-icap in front of a clamd of its own whose limits are above 20 MiB."""
    daemon = ClamdDaemon.start(tmp_path_factory.mktemp("clamd-roomy"),
                               max_file_size=64 * MIB, database=TEST_SIGNATURES)
    try:
        icap = CIcap.start(tmp_path_factory.mktemp("c-icap-roomy"), daemon.socket)
        yield icap
        icap.stop()
    finally:
        daemon.stop()


@pytest.fixture
def icap(c_icap: CIcap) -> IcapClient:
    return IcapClient([c_icap.server], timeout=60)


def test_eicar_is_infected_with_clamds_name_for_it(icap, tmp_path):
    verdict = icap.scan(write(tmp_path / "eicar.com", EICAR))
    assert verdict.kind is VerdictKind.INFECTED
    assert verdict.signature is not None and "EICAR" in verdict.signature.upper()
    assert icap.istag  # c-icap names its service's version in every answer


def test_eicar_inside_a_larger_file_is_infected(icap, tmp_path):
    data = os.urandom(300_000) + EICAR + os.urandom(1000)
    verdict = icap.scan(write(tmp_path / "Q1: rapport ünï ✓.bin", data))
    assert verdict.kind is VerdictKind.INFECTED
    assert "EICAR" in (verdict.signature or "").upper()


def test_a_clean_file_is_clean(icap, tmp_path):
    verdict = icap.scan(write(tmp_path / "clean.txt", b"quarterly figures\n" * 1000))
    assert verdict == Verdict(VerdictKind.CLEAN, "OK")


def test_a_large_clean_file_within_clamds_limit_is_clean(icap, tmp_path):
    size = CLAMD_MAX_FILE_SIZE - MIB  # many chunks after the preview
    verdict = icap.scan(write(tmp_path / "large.bin", os.urandom(size)))
    assert verdict == Verdict(VerdictKind.CLEAN, "OK")


def test_a_20_mib_clean_file_is_clean_and_20_mib_with_eicar_at_its_end_is_not(roomy_c_icap,
                                                                              tmp_path):
    client = IcapClient([roomy_c_icap.server], timeout=120)
    data = os.urandom(20 * MIB)
    assert client.scan(write(tmp_path / "big.bin", data)) == Verdict(VerdictKind.CLEAN, "OK")
    verdict = client.scan(write(tmp_path / "big-eicar.bin", data + EICAR))
    assert verdict.kind is VerdictKind.INFECTED


def test_a_20_mib_file_over_the_session_clamds_limit_is_never_clean(icap, tmp_path):
    """The session's clamd stops at 10 MiB (AlertExceedsMax): c-icap passes its
    Heuristics.Limits.Exceeded on, and it is unscannable, as straight from clamd."""
    verdict = icap.scan(write(tmp_path / "big.bin", os.urandom(20 * MIB)))
    assert verdict.kind is VerdictKind.UNSCANNABLE
    assert (verdict.signature or "").startswith("Heuristics.Limits.Exceeded")


def test_a_password_protected_zip_is_unscannable_as_encrypted(icap, tmp_path):
    write(tmp_path / "eicar.com", EICAR)
    subprocess.run(["zip", "-q", "-P", "secret", "locked.zip", "eicar.com"], cwd=tmp_path,
                   check=True)
    verdict = icap.scan(tmp_path / "locked.zip")
    assert verdict.kind is VerdictKind.UNSCANNABLE
    assert verdict.encrypted
    assert (verdict.signature or "").startswith("Heuristics.Encrypted.")


def test_the_callers_descriptor_is_read(icap, tmp_path):
    fd = os.open(write(tmp_path / "eicar.com", EICAR), os.O_RDONLY)
    try:
        verdict = icap.scan(Path(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)
    assert verdict.kind is VerdictKind.INFECTED


def test_a_stopped_c_icap_is_unreachable_never_clean_and_its_restart_is_seen(c_icap, tmp_path):
    client = IcapClient([c_icap.server], timeout=60)
    eicar = write(tmp_path / "eicar.com", EICAR)
    clean = write(tmp_path / "clean.txt", b"fine\n")
    assert client.ping() is True
    assert sample("ssftp_icap_up", server=c_icap.url) == 1.0
    c_icap.stop()
    try:
        for staged in (eicar, clean):
            verdict = client.scan(staged)
            assert verdict.kind is VerdictKind.ERROR, verdict
            assert verdict.unreachable
            assert c_icap.url in verdict.detail
        assert client.ping() is False
        assert sample("ssftp_icap_up", server=c_icap.url) == 0.0
    finally:
        c_icap.restart()
    assert client.ping() is True
    assert sample("ssftp_icap_up", server=c_icap.url) == 1.0
    assert client.scan(eicar).kind is VerdictKind.INFECTED
    assert client.scan(clean) == Verdict(VerdictKind.CLEAN, "OK")


def test_a_killed_c_icap_is_unreachable_and_comes_back(c_icap, tmp_path):
    client = IcapClient([c_icap.server], timeout=60)
    staged = write(tmp_path / "eicar.com", EICAR)
    c_icap.kill()
    try:
        verdict = client.scan(staged)
        assert verdict.kind is VerdictKind.ERROR and verdict.unreachable
    finally:
        c_icap.restart()
    assert client.scan(staged).kind is VerdictKind.INFECTED


def test_a_c_icap_started_without_its_clamd_is_blind_and_never_says_clean(tmp_path):
    """Debian's c-icap whose clamd socket was absent at its start answers 204 to every file,
    EICAR too: the client's EICAR canary catches it, and no file it was sent is clean."""
    blind = CIcap.start(tmp_path / "blind", tmp_path / "no-clamd.sock", checked=False)
    try:
        client = IcapClient([blind.server], timeout=30)
        for data in (b"an ordinary file\n", EICAR):
            verdict = client.scan(write(tmp_path / "f", data))
            assert verdict.kind is VerdictKind.ERROR and verdict.unreachable, verdict
            assert "answers clean for the EICAR test file" in verdict.detail
        assert client.ping() is False
        assert sample("ssftp_icap_up", server=blind.url) == 0
    finally:
        blind.stop()
