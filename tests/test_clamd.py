"""The clamd client against a real clamd: every way of scanning, and every way of failing,
ends in a verdict, and only clamd's OK for the file is clean."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.runtime.clamd_daemon import TEST_SIGNATURES, ClamdDaemon
from ssftp.scan.clamd import ClamdClient, Verdict, VerdictKind, parse_reply
from tests.conftest import CLAMD_MAX_FILE_SIZE

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MODES = ["scan_path", "scan_fd", "scan_stream"]


@pytest.mark.parametrize(
    ("reply", "kind", "signature"),
    [
        (b"/data/a.txt: OK\0", VerdictKind.CLEAN, None),
        (b"fd[10]: Win.Test.EICAR_HDB-1 FOUND\0", VerdictKind.INFECTED, "Win.Test.EICAR_HDB-1"),
        (b"/x/odd: name: OK\0", VerdictKind.CLEAN, None),
        (b"/x/odd: OK name: Eicar FOUND\0", VerdictKind.INFECTED, "Eicar"),
        (b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0", VerdictKind.UNSCANNABLE,
         "Heuristics.Limits.Exceeded.MaxFileSize"),
        (b"INSTREAM size limit exceeded. ERROR\0", VerdictKind.UNSCANNABLE, None),
        (b"/a: lstat() failed: No such file or directory. ERROR\0", VerdictKind.ERROR, None),
        (b"", VerdictKind.ERROR, None),
        (b"PONG\0", VerdictKind.ERROR, None),
        (b"/a: FOUND\0", VerdictKind.ERROR, None),
        (b"/a: OKAY\0", VerdictKind.ERROR, None),
    ],
)
def test_reply_parsing_fails_closed(reply, kind, signature):
    verdict = parse_reply(reply)
    assert verdict.kind is kind
    assert verdict.signature == signature


def test_addresses():
    assert ClamdAddress.parse("/run/clamd.sock").unix_path == "/run/clamd.sock"
    assert ClamdAddress.parse("unix:/run/c.sock").unix_path == "/run/c.sock"
    tcp = ClamdAddress.parse("tcp://127.0.0.1:3310")
    assert (tcp.host, tcp.port) == ("127.0.0.1", 3310)
    assert ClamdAddress.parse("clamav:3310").host == "clamav"
    for bad in ("clamav", "tcp://h:99999", "tcp://:3310"):
        with pytest.raises(ValueError, match="a clamd address is a socket path"):
            ClamdAddress.parse(bad)


@pytest.fixture
def client(clamd) -> ClamdClient:
    return ClamdClient(clamd.address, timeout=30)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("mode", MODES)
def test_eicar_is_infected_and_clean_is_clean(client, tmp_path, mode):
    scan = getattr(client, mode)
    infected = scan(write(tmp_path / "eicar.com", EICAR))
    assert infected.kind is VerdictKind.INFECTED
    assert infected.signature.startswith("Ssftp.Test.EICAR")
    clean = scan(write(tmp_path / "clean.txt", b"quarterly figures\n" * 1000))
    assert clean == Verdict(VerdictKind.CLEAN, "OK")


@pytest.mark.parametrize("mode", MODES)
def test_eicar_inside_a_larger_file_and_odd_names(client, tmp_path, mode):
    data = os.urandom(300_000) + EICAR + os.urandom(1000)
    verdict = getattr(client, mode)(write(tmp_path / "Q1: rapport ünï ✓.bin", data))
    assert verdict.kind is VerdictKind.INFECTED
    assert verdict.signature.startswith("Ssftp.Test.EICAR-NDB")


@pytest.mark.parametrize("mode", MODES)
def test_over_clamd_limit_is_never_clean(client, tmp_path, mode):
    big = write(tmp_path / "big.bin", os.urandom(CLAMD_MAX_FILE_SIZE + 4096))
    verdict = getattr(client, mode)(big)
    assert verdict.kind is VerdictKind.UNSCANNABLE, verdict


def test_client_size_limit_needs_no_clamd(tmp_path):
    limited = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "absent.sock")), max_file_size=10)
    verdict = limited.scan_stream(write(tmp_path / "f", b"x" * 11))
    assert verdict.kind is VerdictKind.UNSCANNABLE and "over the scan limit" in verdict.detail


@pytest.mark.parametrize("mode", MODES)
def test_clamd_unreachable_is_an_error(tmp_path, mode):
    down = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "no-clamd.sock")), timeout=2)
    verdict = getattr(down, mode)(write(tmp_path / "f.txt", b"hello"))
    assert verdict.kind is VerdictKind.ERROR
    assert "no-clamd.sock" in verdict.detail


def test_missing_file_is_an_error(client, tmp_path):
    assert client.scan_path(tmp_path / "gone.txt").kind is VerdictKind.ERROR
    assert client.scan_fd(tmp_path / "gone.txt").kind is VerdictKind.ERROR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def test_daemon_start_failure_is_explained(tmp_path):
    with pytest.raises(Exception, match="clamd did not start"):
        ClamdDaemon.start(tmp_path / "run", database=tmp_path / "empty-db", ready_timeout=30)
