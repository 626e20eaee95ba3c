"""ssftp.scan.clamd against a real clamd with the offline EICAR signatures: every way of
scanning (path, descriptor, stream, over a Unix socket and TCP) finds EICAR and passes a clean
file; a file over clamd's limits, a missing file, a clamd stopped with SIGSTOP are never
clean, and only a clamd that does not answer PING is an outage."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import TEST_SIGNATURES
from ssftp.scan.signatures import write_generation
from ssftp.scan.verdict import Verdict, VerdictKind
from testkit.files import EICAR
from testkit.openssh_server import free_port
from tests.support.scanning import CLAMD_MAX_FILE_SIZE, CLIENT_MODES, write
from tests.support.waiting import wait_for


@pytest.fixture
def client(clamd) -> ClamdClient:
    return ClamdClient(clamd.address, timeout=30)


@pytest.mark.parametrize("mode", CLIENT_MODES)
def test_eicar_is_infected_and_clean_is_clean(client, tmp_path, mode):
    scan = getattr(client, mode)
    infected = scan(write(tmp_path / "eicar.com", EICAR))
    assert infected.kind is VerdictKind.INFECTED
    assert infected.signature.startswith("Ssftp.Test.EICAR")
    clean = scan(write(tmp_path / "clean.txt", b"quarterly figures\n" * 1000))
    assert clean == Verdict(VerdictKind.CLEAN, "OK")


@pytest.mark.parametrize("mode", CLIENT_MODES)
def test_eicar_inside_a_larger_file_and_odd_names(client, tmp_path, mode):
    data = os.urandom(300_000) + EICAR + os.urandom(1000)
    verdict = getattr(client, mode)(write(tmp_path / "Q1: rapport ünï ✓.bin", data))
    assert verdict.kind is VerdictKind.INFECTED
    assert verdict.signature.startswith("Ssftp.Test.EICAR-NDB")


@pytest.mark.parametrize("mode", CLIENT_MODES)
def test_over_clamd_limit_is_never_clean(client, tmp_path, mode):
    big = write(tmp_path / "big.bin", os.urandom(CLAMD_MAX_FILE_SIZE + 4096))
    verdict = getattr(client, mode)(big)
    assert verdict.kind is VerdictKind.UNSCANNABLE, verdict


def test_missing_file_is_an_error(client, tmp_path):
    assert client.scan_path(tmp_path / "gone.txt").kind is VerdictKind.ERROR
    assert client.scan_fd(tmp_path / "gone.txt").kind is VerdictKind.ERROR


@pytest.fixture(scope="module")
def tcp_clamd(tmp_path_factory):
    daemon = ClamdDaemon.start(tmp_path_factory.mktemp("clamd-tcp"), tcp_port=free_port(),
                               max_file_size=CLAMD_MAX_FILE_SIZE, database=TEST_SIGNATURES)
    yield daemon
    daemon.stop()


def test_instream_over_tcp(tcp_clamd, tmp_path):
    client = ClamdClient(ClamdAddress(host="127.0.0.1", port=tcp_clamd.tcp_port), timeout=30)
    assert client.scan_stream(write(tmp_path / "e", EICAR)).kind is VerdictKind.INFECTED
    assert client.scan_stream(write(tmp_path / "c", b"fine")).kind is VerdictKind.CLEAN


def test_hanging_clamd_times_out_as_error(tcp_clamd, tmp_path):
    """A stuck clamd, for real: the daemon is stopped with SIGSTOP during the scan."""
    client = ClamdClient(ClamdAddress(host="127.0.0.1", port=tcp_clamd.tcp_port), timeout=1)
    os.kill(tcp_clamd.process.pid, signal.SIGSTOP)
    try:
        verdict = client.scan_stream(write(tmp_path / "c", b"fine"))
    finally:
        os.kill(tcp_clamd.process.pid, signal.SIGCONT)
    assert verdict.kind is VerdictKind.ERROR and verdict.timed_out
    assert "timed out after 1 s" in verdict.detail
    # It did not answer PING either: taken as hung until a PING is answered.
    assert client.ping() is True
    assert client.scan_stream(write(tmp_path / "c2", b"fine")).kind is VerdictKind.CLEAN


def test_a_file_clamd_answered_about_is_not_an_outage(clamd: ClamdDaemon,
                                                      tmp_path: Path) -> None:
    staged = tmp_path / "f.txt"
    staged.write_bytes(b"data\n")
    client = ClamdClient(clamd.address, timeout=30)
    assert client.ping() is True
    assert client.scan(staged, "fd").unreachable is False
    # clamd answers ERROR for a path it cannot open: an error about the file, not an outage.
    missing = client.scan(tmp_path / "not-there.txt", "path")
    assert missing.kind is VerdictKind.ERROR
    assert missing.unreachable is False


def test_a_hung_clamd_costs_one_timeout_then_scans_fail_at_once_until_it_answers_ping(
        tmp_path: Path) -> None:
    """clamd stopped with SIGSTOP (a clamd of this test's own; the session's is shared):
    connections are accepted by the kernel and nothing answers. On main every scan waited out
    its own full timeout; now the first one's timeout is followed by a PING, unanswered, and
    the scans after it fail at once as an outage until a PING is answered again."""
    clamd = ClamdDaemon.start(tmp_path / "clamd", database=TEST_SIGNATURES)
    staged = tmp_path / "f.txt"
    staged.write_bytes(b"data\n")
    client = ClamdClient(clamd.address, timeout=0.5)
    try:
        clamd.process.send_signal(signal.SIGSTOP)
        try:
            first = client.scan(staged, "fd")
            assert first.kind is VerdictKind.ERROR
            assert first.timed_out and first.unreachable, first
            second = client.scan(staged, "stream")
            assert second.kind is VerdictKind.ERROR
            assert second.unreachable and not second.timed_out, second
        finally:
            clamd.process.send_signal(signal.SIGCONT)
        assert client.ping() is True
        assert client.scan(staged, "fd").kind is VerdictKind.CLEAN
    finally:
        clamd.stop()


def test_the_loaded_generation_follows_a_reload_of_custom_signatures(tmp_path):
    """A custom signature changes nothing in VERSION; the generation stamped beside it is what
    tells the new database apart, once clamd has loaded it (and not before: the file on disk
    is not the database in use)."""
    database = tmp_path / "database"
    shutil.copytree(TEST_SIGNATURES, database, ignore=shutil.ignore_patterns("*.md"))
    first = write_generation(database)
    daemon = ClamdDaemon.start(tmp_path / "run", database=database)
    try:
        client = ClamdClient(daemon.address, timeout=30)
        before = client.signatures()
        assert (before.generation, before.daily) == (first, None)
        assert before.engine.startswith("ClamAV ")
        write(database / "site.ndb", b"Site.Test.Marker:0:*:" + b"ssftp-site-test".hex().encode()
              + b"\n")
        second = write_generation(database)
        assert client.signatures().generation == first  # on disk, not yet loaded
        assert client.command("RELOAD") == "RELOADING"
        wait_for("clamd to load the new generation",
                 lambda: client.signatures().generation == second)
        assert client.signatures().database == f"+{second}"
        assert client.scan_stream(write(tmp_path / "x.txt", b"..ssftp-site-test..")).signature \
            == "Site.Test.Marker.UNOFFICIAL"
    finally:
        daemon.stop()
