"""ssftp.scan.clamd without a real clamd: clamd's replies parsed (only OK for the request is
clean), and the client against the fake clamd of testkit (a real socket speaking clamd's
protocol): every command as the client sends it, every reply that is not OK, a reply it cannot
read, a clamd that says nothing or hangs up, and one that is not there at all. The client
against a real clamd is in tests/integration/test_scan_clamd.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.scan.clamd import DEFAULT_CHUNK, ClamdClient, parse_max_threads, parse_reply
from ssftp.scan.verdict import Verdict, VerdictKind
from testkit.fake_clamd import HANG_UP, SILENCE, FakeClamd, like_clamd, scans, stats
from testkit.openssh_server import free_port
from tests.support.scanning import CLIENT_MODES, write


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


def test_client_size_limit_needs_no_clamd(tmp_path):
    limited = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "absent.sock")), max_file_size=10)
    verdict = limited.scan_stream(write(tmp_path / "f", b"x" * 11))
    assert verdict.kind is VerdictKind.UNSCANNABLE and "over the scan limit" in verdict.detail


@pytest.mark.parametrize("mode", CLIENT_MODES)
def test_clamd_unreachable_is_an_error(tmp_path, mode):
    down = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "no-clamd.sock")), timeout=2)
    verdict = getattr(down, mode)(write(tmp_path / "f.txt", b"hello"))
    assert verdict.kind is VerdictKind.ERROR
    assert "no-clamd.sock" in verdict.detail


# --- a clamd that is not there is told apart from a file clamd could not scan ---------------


@pytest.mark.parametrize("address", ["socket", "port"])
def test_an_address_with_nothing_behind_it_is_unreachable(tmp_path: Path, address: str) -> None:
    target = (ClamdAddress(unix_path=str(tmp_path / "no-clamd.sock")) if address == "socket"
              else ClamdAddress(host="127.0.0.1", port=free_port()))
    staged = tmp_path / "f.txt"
    staged.write_bytes(b"data\n")
    client = ClamdClient(target, timeout=5)
    assert client.ping() is False
    for mode in ("path", "fd", "stream"):
        verdict = client.scan(staged, mode)
        assert verdict.kind is VerdictKind.ERROR
        assert verdict.unreachable, (mode, verdict)


# --- against the fake clamd: what the client sends, and what it makes of each answer --------


@pytest.mark.parametrize(("mode", "command"), [("scan_path", "SCAN"), ("scan_fd", "FILDES"),
                                               ("scan_stream", "INSTREAM")])
def test_each_way_of_scanning_sends_its_command_ended_by_nul_with_the_files_bytes(
        fake_clamd, tmp_path, mode, command):
    data = os.urandom(3 * DEFAULT_CHUNK + 17)  # several INSTREAM chunks and a short last one
    staged = write(tmp_path / "Q1: rapport ünï.bin", data)
    verdict = getattr(ClamdClient(fake_clamd.address, timeout=30), mode)(staged)
    assert verdict == Verdict(VerdictKind.CLEAN, "OK")
    (request,) = fake_clamd.scans
    assert (request.command, request.terminator, request.data) == (command, b"\0", data)
    assert request.argument == (str(staged) if command == "SCAN" else "")


def test_auto_passes_the_descriptor_over_a_socket_and_streams_over_tcp(tmp_path):
    staged = write(tmp_path / "f.txt", b"quarterly figures\n")
    for tcp, command in ((False, "FILDES"), (True, "INSTREAM")):
        with FakeClamd(tcp=tcp) as fake:
            assert ClamdClient(fake.address, timeout=30).scan(staged).kind is VerdictKind.CLEAN
            assert [request.command for request in fake.scans] == [command]


def test_found_is_infected_with_the_signature_clamd_named(fake_clamd, tmp_path):
    fake_clamd.answer = scans(lambda request: f"{request.name}: Win.Test.Fake-1 FOUND".encode())
    verdict = ClamdClient(fake_clamd.address, timeout=30).scan(write(tmp_path / "f", b"x"))
    assert (verdict.kind, verdict.signature) == (VerdictKind.INFECTED, "Win.Test.Fake-1")
    assert verdict.detail == "Win.Test.Fake-1 FOUND"


@pytest.mark.parametrize("reply", [b"fd[9]: Can't allocate memory ERROR",
                                   b"fd[9]: lstat() failed: Permission denied. ERROR",
                                   b"Command read timed out ERROR"])
def test_an_error_reply_is_an_error_of_this_file_never_clean(fake_clamd, tmp_path, reply):
    fake_clamd.answer = scans(reply)
    verdict = ClamdClient(fake_clamd.address, timeout=30).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.ERROR
    assert verdict.detail.startswith("clamd error: ")
    assert not verdict.unreachable  # clamd answered: retried as a file, not an outage


def test_a_stream_over_clamds_stream_limit_is_unscannable(tmp_path):
    """clamd answers as soon as the stream passes StreamMaxLength and hangs up on the rest:
    the client stops sending and reads the answer."""
    with FakeClamd(stream_max_length=DEFAULT_CHUNK) as fake:
        client = ClamdClient(fake.address, timeout=30)
        verdict = client.scan_stream(write(tmp_path / "big", os.urandom(8 * DEFAULT_CHUNK)))
    assert verdict.kind is VerdictKind.UNSCANNABLE
    assert "size limit exceeded" in verdict.detail


def test_clamds_own_limits_found_are_unscannable_never_infected_or_clean(fake_clamd, tmp_path):
    fake_clamd.answer = scans(b"fd[9]: Heuristics.Limits.Exceeded.MaxScanSize FOUND")
    verdict = ClamdClient(fake_clamd.address, timeout=30).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.UNSCANNABLE
    assert verdict.signature == "Heuristics.Limits.Exceeded.MaxScanSize"


@pytest.mark.parametrize("reply", [b"\xff\xfe\x00garbage", b"PONG", b"fd[9]: OKAY",
                                   b"fd[9]: FOUND", b"fd[9]: OK FOUND then", HANG_UP])
def test_a_reply_the_client_cannot_read_is_an_error(fake_clamd, tmp_path, reply):
    fake_clamd.answer = scans(reply)
    verdict = ClamdClient(fake_clamd.address, timeout=30).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.ERROR
    assert verdict.detail.startswith("unreadable clamd reply")


def test_a_silent_clamd_times_out_as_an_error_and_a_ping_tells_slow_from_hung(fake_clamd,
                                                                              tmp_path):
    staged = write(tmp_path / "f", b"x")
    # The PING after a timeout waits as long as the scan did: a second is long enough for the
    # fake's answer on a busy machine.
    client = ClamdClient(fake_clamd.address, timeout=1)
    fake_clamd.answer = scans(SILENCE)  # slow on this file, but it answers PING
    slow = client.scan(staged)
    assert (slow.kind, slow.timed_out, slow.unreachable) == (VerdictKind.ERROR, True, False)
    assert "timed out after 1 s" in slow.detail

    fake_clamd.answer = lambda request: SILENCE  # PING unanswered too: it hangs
    hung = client.scan(staged)
    assert (hung.kind, hung.timed_out, hung.unreachable) == (VerdictKind.ERROR, True, True)
    asked = len(fake_clamd.requests)
    at_once = client.scan(staged)  # the scans after it fail without asking
    assert (at_once.kind, at_once.unreachable, at_once.timed_out) == (VerdictKind.ERROR, True,
                                                                      False)
    assert len(fake_clamd.requests) == asked

    fake_clamd.answer = like_clamd
    assert client.ping() is True
    assert client.scan(staged).kind is VerdictKind.CLEAN


def test_a_descriptor_clamd_did_not_receive_is_an_error(tmp_path):
    """FILDES over TCP carries no descriptor: clamd answers an error, never a verdict."""
    with FakeClamd(tcp=True) as fake:
        verdict = ClamdClient(fake.address, timeout=30).scan(write(tmp_path / "f", b"x"), "fd")
    assert verdict.kind is VerdictKind.ERROR


def test_a_file_over_the_clients_limit_is_unscannable_without_asking_clamd(fake_clamd,
                                                                           tmp_path):
    client = ClamdClient(fake_clamd.address, timeout=30, max_file_size=1000)
    assert client.scan(write(tmp_path / "f", b"x" * 1001)).kind is VerdictKind.UNSCANNABLE
    assert client.scan(write(tmp_path / "g", b"x" * 1000)).kind is VerdictKind.CLEAN
    assert [len(request.data or b"") for request in fake_clamd.scans] == [1000]


def test_ping_and_version_are_answered_and_a_ping_hung_up_on_is_false(fake_clamd):
    client = ClamdClient(fake_clamd.address, timeout=30)
    assert client.ping() is True
    assert client.command("VERSION").startswith("ClamAV ")
    assert [(request.command, request.terminator) for request in fake_clamd.requests] == [
        ("PING", b"\0"), ("VERSION", b"\0")]
    fake_clamd.answer = lambda request: HANG_UP
    assert client.ping() is False


@pytest.mark.parametrize(("reply", "threads"), [
    (stats(4).decode(), 4),
    (stats(12).decode(), 12),
    (stats(0).decode(), None),  # a clamd with no thread says nothing usable
    ("UNKNOWN COMMAND", None),
    ("THREADS: live 1  idle 0\nEND", None),
    ("QUEUE: 0 items\n\tTHREADS: max 9\nEND", None),  # only clamd's own THREADS line
])
def test_stats_tells_clamds_max_threads_or_nothing(reply, threads):
    assert parse_max_threads(reply) == threads


def test_scan_slots_are_the_configured_ones_else_clamds_threads(fake_clamd, tmp_path):
    assert ClamdClient(fake_clamd.address).scan_slots() == 4
    fake_clamd.answer = lambda request: stats(7) if request.command == "STATS" else like_clamd(
        request)
    assert ClamdClient(fake_clamd.address).scan_slots() == 7
    asked = len(fake_clamd.requests)
    assert ClamdClient(fake_clamd.address, max_scans=2).scan_slots() == 2
    assert len(fake_clamd.requests) == asked  # configured: clamd is not asked
    nobody = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "nobody.sock")))
    assert nobody.scan_slots() is None
    fake_clamd.answer = lambda request: HANG_UP
    assert ClamdClient(fake_clamd.address).scan_slots() is None
