"""ssftp.scan.clamd without a real clamd: clamd's replies parsed (only OK for the request is
clean), and the client against the fake clamd of testkit (a real socket speaking clamd's
protocol): every command as the client sends it, every reply that is not OK, a reply it cannot
read, a clamd that says nothing or hangs up, and one that is not there at all. The client
against a real clamd is in tests/integration/test_scan_clamd.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.scan.clamd import ClamdClient, VerdictKind, parse_reply
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

