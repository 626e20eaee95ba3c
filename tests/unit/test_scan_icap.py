"""ssftp.scan.icap against a fake ICAP server: a real socket server in a thread on 127.0.0.1
that reads requests as RFC 3507 frames them and answers what the test chooses.

A fake, because the unit tier runs no daemons, and because some answers cannot be caused on
c-icap at will: a 500, garbage, a connection closed mid-reply, a server that takes the file and
says nothing, a 200 that changes the body without naming a threat, an X-Virus-ID header. What
c-icap in front of a real clamd answers is in tests/integration/test_scan_icap.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ssftp.addresses import IcapAddress
from ssftp.scan.icap import MODIFIED, IcapClient, threat_names
from ssftp.scan.verdict import Verdict, VerdictKind
from testkit.files import EICAR
from tests.support.metrics import sample
from tests.support.scanning import free_closed_port, write

# What the fake does instead of answering: say nothing until the client gives up, or close.
SILENCE = b"<silence>"
HANG_UP = b"<hang up>"


@dataclass
class Request:
    method: str
    headers: dict[str, str]
    http_head: bytes = b""
    preview: bytes | None = None
    ieof: bool = False
    continued: bool = False
    body: bytes = b""


FOUND_EICAR = (b'ICAP/1.0 200 OK\r\nISTag: "fake-7"\r\nX-Infection-Found: Type=0; '
               b"Resolution=2; Threat=Eicar-Test-Signature;\r\n"
               b"Encapsulated: null-body=0\r\n\r\n")


def no_content(request: Request) -> bytes:
    return b'ICAP/1.0 204 No Content\r\nISTag: "fake-7"\r\n\r\n'


def returned(body: bytes | None = None, http: bytes = b"HTTP/1.1 200 OK",
             headers: bytes = b"") -> Callable[[Request], bytes]:
    """A 200 returning ``body`` (the body received when None) under the HTTP status ``http``."""
    def answer(request: Request) -> bytes:
        data = request.body if body is None else body
        head = http + b"\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n"
        chunks = (f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b"") + b"0\r\n\r\n"
        return (b'ICAP/1.0 200 OK\r\nISTag: "fake-7"\r\n' + headers
                + f"Encapsulated: res-hdr=0, res-body={len(head)}\r\n\r\n".encode()
                + head + chunks)
    return answer


def raw(reply: bytes) -> Callable[[Request], bytes]:
    return lambda request: reply


def _read_headers(reader: socket.SocketIO | object) -> dict[str, str]:
    headers: dict[str, str] = {}
    while (line := reader.readline().rstrip(b"\r\n")):  # type: ignore[attr-defined]
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


@dataclass
class FakeIcap:
    """An ICAP server on a port of its own. ``preview`` is what its OPTIONS offer;
    ``after_preview`` answers a preview (None: 100 Continue); ``answer`` the whole request."""

    preview: int | None = None
    # Like every anti-virus engine it finds the EICAR test file, whatever ``answer`` says
    # (the client's canary); False: a blind server, which answers it like any file.
    finds_eicar: bool = True
    options: Callable[[Request], bytes] | None = None
    after_preview: Callable[[Request], bytes | None] = lambda request: None
    answer: Callable[[Request], bytes] = no_content
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, service: str = "/avscan") -> str:
        return f"icap://127.0.0.1:{self.port}{service}"

    @property
    def server(self) -> IcapAddress:
        return IcapAddress.parse(self.url())

    def respmods(self) -> list[Request]:
        """The RESPMODs of files, not of the client's EICAR canary."""
        return [request for request in self.requests
                if request.method == "RESPMOD" and not self._canary(request)]

    def _canary(self, request: Request) -> bool:
        return self.finds_eicar and bool(request.body) and EICAR.startswith(request.body)

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _options_reply(self, request: Request) -> bytes:
        if self.options is not None:
            return self.options(request)
        preview = f"Preview: {self.preview}\r\n" if self.preview is not None else ""
        return (f'ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: "fake-7"\r\nAllow: 204\r\n'
                f"{preview}Options-TTL: 3600\r\nEncapsulated: null-body=0\r\n\r\n").encode()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn, conn.makefile("rb") as reader:
            method = reader.readline().decode("latin-1").split(" ")[0]
            request = Request(method, _read_headers(reader))
            self.requests.append(request)
            if method == "OPTIONS":
                self._send(conn, reader, self._options_reply(request))
                return
            offsets = dict(item.strip().split("=") for item in
                           request.headers["encapsulated"].split(","))
            request.http_head = reader.read(int(offsets["res-body"]))
            data, request.ieof = self._chunks(reader)
            request.body = data
            if "preview" in request.headers:
                request.preview = data
                if not request.ieof:
                    early = None if self._canary(request) else self.after_preview(request)
                    if early is not None:
                        self._send(conn, reader, early)
                        return
                    conn.sendall(b"ICAP/1.0 100 Continue\r\n\r\n")
                    request.continued = True
                    rest, _ = self._chunks(reader)
                    request.body = data + rest
            if self.finds_eicar and request.body == EICAR:
                self._send(conn, reader, FOUND_EICAR)
                return
            self._send(conn, reader, self.answer(request))

    @staticmethod
    def _chunks(reader: object) -> tuple[bytes, bool]:
        data = b""
        while True:
            line = reader.readline().rstrip(b"\r\n")  # type: ignore[attr-defined]
            size, _, extension = line.partition(b";")
            if int(size, 16) == 0:
                reader.readline()  # type: ignore[attr-defined]
                return data, extension.strip() == b"ieof"
            data += reader.read(int(size, 16))  # type: ignore[attr-defined]
            reader.readline()  # type: ignore[attr-defined]

    def _send(self, conn: socket.socket, reader: object, reply: bytes) -> None:
        if reply == SILENCE:
            while reader.read(1):  # type: ignore[attr-defined]  # until the client hangs up
                pass
        elif reply != HANG_UP:
            conn.sendall(reply)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):  # wakes the accept() (a close alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=30)


@pytest.fixture
def fake() -> Iterator[FakeIcap]:
    server = FakeIcap()
    yield server
    server.close()


def client_of(*servers: FakeIcap | IcapAddress, timeout: float = 30, **kwargs: int) -> IcapClient:
    return IcapClient([s.server if isinstance(s, FakeIcap) else s for s in servers],
                      timeout=timeout, **kwargs)


def refusing() -> IcapAddress:
    return IcapAddress.parse(f"icap://127.0.0.1:{free_closed_port()}/avscan")


# --- what is sent, and the clean answers ------------------------------------------------------


def test_a_204_is_clean_and_the_whole_file_went_as_a_chunked_http_response(fake, tmp_path):
    data = os.urandom(3 * (1 << 16) + 17)  # several chunks and a short last one
    verdict = client_of(fake).scan(write(tmp_path / "Q1: rapport ünï.bin", data))
    assert verdict == Verdict(VerdictKind.CLEAN, "OK")
    (request,) = fake.respmods()
    assert request.body == data
    assert request.headers["allow"] == "204"
    assert request.http_head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(data)}\r\n".encode() in request.http_head
    assert "preview" not in request.headers  # the fake's OPTIONS offered none


def test_a_200_returning_the_body_unchanged_is_clean(fake, tmp_path):
    fake.answer = returned()
    verdict = client_of(fake).scan(write(tmp_path / "f", b"quarterly figures\n" * 5000))
    assert verdict == Verdict(VerdictKind.CLEAN, "OK")


@pytest.mark.parametrize("body", [b"<html>blocked</html>", b"quarterly figureZ\n",
                                  b"quarterly figures\n" * 2, b""])
def test_a_200_with_a_changed_body_is_infected_as_modified(fake, tmp_path, body):
    fake.answer = returned(body)
    verdict = client_of(fake).scan(write(tmp_path / "f", b"quarterly figures\n"))
    assert verdict.kind is VerdictKind.INFECTED
    assert verdict.signature == MODIFIED


def test_a_200_with_the_same_body_under_another_http_status_is_modified(fake, tmp_path):
    fake.answer = returned(http=b"HTTP/1.1 403 Forbidden")
    verdict = client_of(fake).scan(write(tmp_path / "f", b"quarterly figures\n"))
    assert (verdict.kind, verdict.signature) == (VerdictKind.INFECTED, MODIFIED)


# --- threats named in headers -----------------------------------------------------------------


VIOLATIONS = (b"X-Violations-Found: 1\r\n\t-\r\n\tWin.Test.Fake-2\r\n\t0\r\n\t0\r\n")


@pytest.mark.parametrize(("headers", "signature"), [
    (b"X-Infection-Found: Type=0; Resolution=2; Threat=Win.Test.Fake-1;\r\n", "Win.Test.Fake-1"),
    (VIOLATIONS, "Win.Test.Fake-2"),
    (b"X-Virus-ID: Win.Test.Fake-3\r\n", "Win.Test.Fake-3"),
])
def test_a_threat_header_is_infected_with_the_name_it_gives(fake, tmp_path, headers, signature):
    fake.answer = returned(b"<html>virus found</html>", b"HTTP/1.0 403 Forbidden", headers)
    verdict = client_of(fake).scan(write(tmp_path / "f", b"x"))
    assert (verdict.kind, verdict.signature) == (VerdictKind.INFECTED, signature)
    assert verdict.detail == f"{signature} FOUND"


def test_a_threat_header_on_an_unchanged_body_still_counts(fake, tmp_path):
    fake.answer = returned(headers=b"X-Infection-Found: Type=0; Resolution=0; "
                           b"Threat=Win.Test.Fake-1;\r\n")
    verdict = client_of(fake).scan(write(tmp_path / "f", b"x"))
    assert (verdict.kind, verdict.signature) == (VerdictKind.INFECTED, "Win.Test.Fake-1")


def test_an_encrypted_archive_reported_through_icap_is_unscannable_not_infected(fake, tmp_path):
    fake.answer = returned(b"blocked", b"HTTP/1.0 403 Forbidden",
                           b"X-Infection-Found: Type=0; Resolution=2; "
                           b"Threat=Heuristics.Encrypted.Zip;\r\n")
    verdict = client_of(fake).scan(write(tmp_path / "f.zip", b"PK\3\4 encrypted"))
    assert verdict.kind is VerdictKind.UNSCANNABLE
    assert verdict.encrypted
    assert verdict.signature == "Heuristics.Encrypted.Zip"


def test_every_threat_of_both_headers_is_read_once_in_order():
    names = threat_names({"x-infection-found": "Type=0; Threat=Heuristics.Encrypted.Zip;",
                          "x-violations-found": "2\n-\nHeuristics.Encrypted.Zip\n0\n0\n"
                                                "-\nWin.Test.Fake-1\n0\n0"})
    assert names == ["Heuristics.Encrypted.Zip", "Win.Test.Fake-1"]


def test_two_names_one_malware_is_infected(fake, tmp_path):
    fake.answer = returned(b"blocked", b"HTTP/1.0 403 Forbidden",
                           b"X-Violations-Found: 2\r\n\t-\r\n\tHeuristics.Encrypted.Zip\r\n\t0\r\n"
                           b"\t0\r\n\t-\r\n\tWin.Test.Fake-1\r\n\t0\r\n\t0\r\n")
    verdict = client_of(fake).scan(write(tmp_path / "f", b"x"))
    assert (verdict.kind, verdict.signature) == (VerdictKind.INFECTED, "Win.Test.Fake-1")


# --- every failure is an error naming the server, never clean ---------------------------------


@pytest.mark.parametrize(("reply", "status"), [
    (b"ICAP/1.0 500 Server Error\r\n\r\n", "500"),
    (b"ICAP/1.0 413 Request Entity Too Large\r\n\r\n", "413"),
    (b"ICAP/1.0 404 ICAP Service not found\r\n\r\n", "404"),
])
def test_an_error_status_is_an_error_naming_the_server_and_the_status(fake, tmp_path, reply,
                                                                      status):
    fake.answer = raw(reply)
    verdict = client_of(fake).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.ERROR
    assert verdict.detail.startswith(f"{fake.url()}: ICAP {status}")
    assert not verdict.unreachable and not verdict.timed_out


@pytest.mark.parametrize("reply", [
    b"\xff\xfe garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"ICAP/1.0 2O4 No Content\r\n\r\n",
    b"ICAP/1.0 200 OK\r\n\r\n",  # no Encapsulated header
    b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=x\r\n\r\n",
    b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    b"zz\r\nxx\r\n0\r\n\r\n",  # an unreadable chunk size
    b"ICAP/1.0 100 Continue\r\n\r\n",  # after the whole file was sent
])
def test_a_reply_that_is_not_icap_is_an_error(fake, tmp_path, reply):
    fake.answer = raw(reply)
    verdict = client_of(fake).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.ERROR
    assert verdict.detail.startswith(fake.url())


@pytest.mark.parametrize("reply", [
    HANG_UP,
    b"ICAP/1.0 204 No Con",
    b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    b"1\r\nx",
])
def test_a_server_closing_mid_reply_is_an_error(fake, tmp_path, reply):
    fake.answer = raw(reply)
    verdict = client_of(fake).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.ERROR
    assert verdict.detail.startswith(fake.url())


def test_a_silent_server_times_out_as_an_error_of_this_file_while_it_answers_options(
        fake, tmp_path):
    fake.answer = raw(SILENCE)
    verdict = client_of(fake, timeout=0.5).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.ERROR
    assert verdict.timed_out
    assert not verdict.unreachable  # it answered OPTIONS after: slow on this file
    assert verdict.detail.startswith(f"{fake.url()}: timed out")


def test_a_server_that_hangs_is_unreachable_until_it_answers_options_again(tmp_path):
    hung = FakeIcap(answer=raw(SILENCE))
    try:
        client = client_of(hung, timeout=0.5)
        assert client.ping()  # OPTIONS cached while it answered
        hung.options = raw(SILENCE)
        staged = write(tmp_path / "f", b"x")
        first = client.scan(staged)
        assert first.kind is VerdictKind.ERROR
        assert first.timed_out and first.unreachable
        scans_before = len(hung.respmods())
        second = client.scan(staged)
        assert second.kind is VerdictKind.ERROR and second.unreachable
        assert len(hung.respmods()) == scans_before  # not asked again: skipped as hung
        hung.options = None
        hung.answer = no_content
        assert client.ping()
        assert client.scan(staged).kind is VerdictKind.CLEAN
    finally:
        hung.close()


# --- the pool ---------------------------------------------------------------------------------


def test_a_server_that_refuses_is_skipped_and_the_next_one_judges(fake, tmp_path):
    fake.answer = returned(b"blocked", b"HTTP/1.0 403 Forbidden",
                           b"X-Infection-Found: Type=0; Resolution=2; Threat=Win.Test.Fake-1;\r\n")
    verdict = client_of(refusing(), fake).scan(write(tmp_path / "f", b"x"))
    assert (verdict.kind, verdict.signature) == (VerdictKind.INFECTED, "Win.Test.Fake-1")
    assert len(fake.respmods()) == 1


def test_no_server_to_connect_to_is_unreachable(tmp_path):
    first, second = refusing(), refusing()
    verdict = client_of(first, second).scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is VerdictKind.ERROR
    assert verdict.unreachable
    assert first.url in verdict.detail and second.url in verdict.detail


def test_a_server_that_answers_badly_is_not_skipped_for_the_next(tmp_path):
    """Only a refused connection passes the file on: an error from a server that took it
    stands (the next server's clean would hide what the first one said)."""
    failing, fine = FakeIcap(answer=raw(b"ICAP/1.0 500 Server Error\r\n\r\n")), FakeIcap()
    try:
        verdict = client_of(failing, fine).scan(write(tmp_path / "f", b"x"))
        assert verdict.kind is VerdictKind.ERROR
        assert fine.respmods() == []
    finally:
        failing.close()
        fine.close()


# --- preview ----------------------------------------------------------------------------------


def test_the_preview_is_sent_then_the_rest_after_100_continue(tmp_path):
    fake = FakeIcap(preview=10, answer=returned())
    try:
        data = os.urandom(100_000)
        verdict = client_of(fake).scan(write(tmp_path / "f", data))
        assert verdict == Verdict(VerdictKind.CLEAN, "OK")
        (request,) = fake.respmods()
        assert request.headers["preview"] == "10"
        assert (request.preview, request.ieof, request.continued) == (data[:10], False, True)
        assert request.body == data
    finally:
        fake.close()


def test_a_file_that_fits_the_preview_is_sent_whole_with_ieof(tmp_path):
    fake = FakeIcap(preview=1024)
    try:
        verdict = client_of(fake).scan(write(tmp_path / "f", b"small"))
        assert verdict.kind is VerdictKind.CLEAN
        (request,) = fake.respmods()
        assert (request.preview, request.ieof, request.continued) == (b"small", True, False)
    finally:
        fake.close()


def test_a_204_after_the_preview_ends_the_scan(tmp_path):
    fake = FakeIcap(preview=10, after_preview=no_content)
    try:
        verdict = client_of(fake).scan(write(tmp_path / "f", os.urandom(5000)))
        assert verdict == Verdict(VerdictKind.CLEAN, "OK")
        (request,) = fake.respmods()
        assert not request.continued and len(request.body) == 10
    finally:
        fake.close()


def test_a_threat_found_in_the_preview_ends_the_scan(tmp_path):
    fake = FakeIcap(preview=10, after_preview=returned(
        b"blocked", b"HTTP/1.0 403 Forbidden", b"X-Virus-ID: Win.Test.Fake-1\r\n"))
    try:
        verdict = client_of(fake).scan(write(tmp_path / "f", os.urandom(5000)))
        assert (verdict.kind, verdict.signature) == (VerdictKind.INFECTED, "Win.Test.Fake-1")
    finally:
        fake.close()


def test_options_are_asked_once_and_their_istag_kept(fake, tmp_path):
    client = client_of(fake)
    for name in ("a", "b", "c"):
        assert client.scan(write(tmp_path / name, b"x")).kind is VerdictKind.CLEAN
    assert [request.method for request in fake.requests].count("OPTIONS") == 1
    assert client.istag == '"fake-7"'


def test_options_that_are_not_200_make_the_scan_an_error(tmp_path):
    fake = FakeIcap(options=raw(b"ICAP/1.0 404 ICAP Service not found\r\n\r\n"))
    try:
        verdict = client_of(fake).scan(write(tmp_path / "f", b"x"))
        assert verdict.kind is VerdictKind.ERROR
        assert "404" in verdict.detail and fake.url() in verdict.detail
        assert fake.respmods() == []
    finally:
        fake.close()


# --- ping, limits, the file ---------------------------------------------------------------


def test_ping_asks_every_server_and_exports_each_ones_answer(fake):
    down = refusing()
    client = client_of(down, fake)
    assert client.ping() is True
    assert sample("ssftp_icap_up", server=fake.url()) == 1.0
    assert sample("ssftp_icap_up", server=down.url) == 0.0
    assert client_of(down).ping() is False


def test_a_file_over_max_file_size_is_unscannable_before_any_server_is_asked(fake, tmp_path):
    verdict = client_of(fake, max_file_size=10).scan(write(tmp_path / "f", b"x" * 11))
    assert verdict.kind is VerdictKind.UNSCANNABLE and "over the scan limit" in verdict.detail
    assert fake.requests == []
    assert client_of(fake, max_file_size=10).over_limit(10) is None


def test_a_file_that_cannot_be_read_is_an_error(fake, tmp_path):
    verdict = client_of(fake).scan(tmp_path / "gone")
    assert verdict.kind is VerdictKind.ERROR
    assert fake.requests == []


def test_the_callers_descriptor_path_is_read(fake, tmp_path):
    data = b"through a descriptor\n"
    fd = os.open(write(tmp_path / "f", data), os.O_RDONLY)
    try:
        verdict = client_of(fake).scan(Path(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)
    assert verdict.kind is VerdictKind.CLEAN
    assert hashlib.sha256(fake.respmods()[0].body).digest() == hashlib.sha256(data).digest()


def test_loaded_signatures_are_none():
    assert client_of(refusing()).loaded_signatures() is None


# --- the EICAR canary -------------------------------------------------------------------------


def test_a_server_that_says_clean_about_eicar_is_blind_and_never_judges(tmp_path):
    """c-icap whose clamd was away at its start answers 204 to everything (seen on Debian's
    c-icap): nothing in a 204 tells that from a scan, so the client shows each server the
    EICAR test file first; this one passes it, and is not asked about the file at all."""
    blind = FakeIcap(finds_eicar=False)
    try:
        client = client_of(blind)
        verdict = client.scan(write(tmp_path / "f", b"anything"))
        assert verdict.kind is VerdictKind.ERROR and verdict.unreachable
        assert "answers clean for the EICAR test file" in verdict.detail
        assert [request.body for request in blind.respmods()] == [EICAR]  # the canary only
        assert client.ping() is False
        assert sample("ssftp_icap_up", server=blind.url()) == 0.0
    finally:
        blind.close()


def test_a_blind_server_is_passed_over_for_one_that_sees(fake, tmp_path):
    blind = FakeIcap(finds_eicar=False)
    try:
        verdict = client_of(blind, fake).scan(write(tmp_path / "f", b"plain text"))
        assert verdict == Verdict(VerdictKind.CLEAN, "OK")
        assert [request.body for request in fake.respmods()] == [b"plain text"]
    finally:
        blind.close()


def test_the_canary_is_shown_once_a_minute_not_once_a_file(fake, tmp_path):
    client = client_of(fake)
    for n in range(3):
        assert client.scan(write(tmp_path / f"f{n}", b"text")).kind is VerdictKind.CLEAN
    canaries = [r for r in fake.requests if r.method == "RESPMOD" and r.body == EICAR]
    assert len(canaries) == 1
