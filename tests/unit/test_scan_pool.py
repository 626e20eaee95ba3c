"""ssftp.scan.pool without a real clamd: the unit tier runs no daemons, so the pool's clamds
are fake ones (testkit.fake_clamd: real Unix sockets, served by threads of this process) and
addresses with nothing behind them. Scans spread round-robin; a daemon that is not there or
answers nonsense is skipped at once and the file scanned by the next; an answer about the file
is never overruled; with every daemon down the verdict is an outage, never clean; a daemon
comes back; the signatures named are the oldest; many threads share one pool. Two real clamds,
one of them killed mid-run, are in tests/integration/test_scan_pool.py."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.pool import MIXED_GENERATION, ClamdPool, oldest
from ssftp.scan.signatures import Signatures
from ssftp.scan.verdict import VerdictKind
from testkit.fake_clamd import HANG_UP, Answer, FakeClamd, Request, like_clamd, scans, stats
from testkit.files import EICAR
from tests.support.metrics import sample
from tests.support.scanning import write

# Long enough that no scan of a test PINGs a down daemon again unless the test says so.
NEVER = 3600.0


@pytest.fixture
def fakes() -> Iterator[list[FakeClamd]]:
    """Three fake clamds, each on a socket of its own."""
    started = [FakeClamd() for _ in range(3)]
    yield started
    for fake in started:
        fake.stop()


def client(address: ClamdAddress) -> ClamdClient:
    return ClamdClient(address, timeout=30)


def nobody(tmp_path: Path, name: str = "nobody") -> ClamdClient:
    """A clamd that is not there: a socket path nothing listens on."""
    return client(ClamdAddress(unix_path=str(tmp_path / f"{name}.sock")))


def up_figure(member: ClamdClient) -> float:
    return sample("ssftp_clamd_up", address=str(member.address))


def files(tmp_path: Path, count: int) -> list[Path]:
    return [write(tmp_path / "files" / f"f{number}.txt", f"file {number}\n".encode())
            for number in range(count)]


def test_scans_are_spread_round_robin(fakes, tmp_path):
    pool = ClamdPool([client(fake.address) for fake in fakes])
    for path in files(tmp_path, 9):
        assert pool.scan(path).kind is VerdictKind.CLEAN
    assert [len(fake.scans) for fake in fakes] == [3, 3, 3]
    assert pool.name == "clamd" and len(pool.clients) == 3


def test_a_pool_needs_a_clamd():
    with pytest.raises(ValueError, match="at least one clamd"):
        ClamdPool([])


def test_a_clamd_that_is_not_there_is_skipped_at_once_and_the_next_scans_the_file(
        fakes, tmp_path):
    gone = nobody(tmp_path)
    pool = ClamdPool([gone, client(fakes[0].address)], retry_down_seconds=NEVER)
    verdict = pool.scan(write(tmp_path / "eicar.com", EICAR))
    assert verdict.kind is VerdictKind.INFECTED  # the file went on, and was judged
    assert pool.down == [gone]
    assert up_figure(gone) == 0  # seen without a PING: its files go elsewhere
    for path in files(tmp_path, 4):
        assert pool.scan(path).kind is VerdictKind.CLEAN
    assert len(fakes[0].scans) == 5


@pytest.mark.parametrize("nonsense", [b"\xff\xfe\x00garbage", b"fd[9]: OKAY", HANG_UP])
def test_a_clamd_answering_nonsense_is_skipped_and_taken_as_down(fakes, tmp_path, nonsense):
    babbling, good = fakes[0], fakes[1]
    babbling.answer = scans(nonsense)
    pool = ClamdPool([client(babbling.address), client(good.address)],
                     retry_down_seconds=NEVER)
    paths = files(tmp_path, 5)
    assert [pool.scan(path).kind for path in paths] == [VerdictKind.CLEAN] * 5
    assert len(babbling.scans) == 1  # asked once, then skipped
    assert sorted(request.data for request in good.scans) == sorted(
        path.read_bytes() for path in paths)


@pytest.mark.parametrize(("reply", "kind"), [
    (b"fd[9]: Can't allocate memory ERROR", VerdictKind.ERROR),
    (b"fd[9]: Win.Test.Fake-1 FOUND", VerdictKind.INFECTED),
    (b"fd[9]: Heuristics.Limits.Exceeded.MaxScanSize FOUND", VerdictKind.UNSCANNABLE),
    (b"fd[9]: Heuristics.Structured.CreditCardNumber FOUND", VerdictKind.BLOCKED),
])
def test_an_answer_about_the_file_is_the_verdict_never_asked_again(fakes, tmp_path, reply,
                                                                    kind):
    first, second = fakes[0], fakes[1]
    first.answer = scans(reply)
    pool = ClamdPool([client(first.address), client(second.address)])
    verdict = pool.scan(write(tmp_path / "f", b"x"))
    assert verdict.kind is kind and not verdict.unreachable
    assert (len(first.scans), len(second.scans)) == (1, 0)
    assert pool.down == []


def test_a_file_that_cannot_be_read_is_its_own_error_not_a_clamd_down(fakes, tmp_path):
    """The client cannot open the file: an OSError like a broken connection, but the clamd
    answers PING, so it stays up and nobody else is asked."""
    pool = ClamdPool([client(fake.address) for fake in fakes[:2]])
    verdict = pool.scan(tmp_path / "not-there.txt")
    assert verdict.kind is VerdictKind.ERROR and not verdict.unreachable
    assert pool.down == []
    assert [len(fake.scans) for fake in fakes[:2]] == [0, 0]


def test_every_clamd_down_is_an_outage_never_clean(fakes, tmp_path):
    babbling = fakes[0]
    babbling.answer = scans(b"PONG")
    gone = nobody(tmp_path)
    pool = ClamdPool([gone, client(babbling.address)], retry_down_seconds=NEVER)
    for path in files(tmp_path, 3):
        verdict = pool.scan(path)
        assert verdict.kind is VerdictKind.ERROR and verdict.unreachable, verdict
        assert "no clamd of the pool could scan it" in verdict.detail
    assert len(babbling.scans) == 1  # then taken as down, like the other
    assert len(pool.down) == 2


def test_a_clamd_down_comes_back_with_ping(fakes, tmp_path):
    flaky, steady = fakes[0], fakes[1]
    flaky.answer = lambda request: HANG_UP  # PING too: it is gone
    members = [client(flaky.address), client(steady.address)]
    pool = ClamdPool(members, retry_down_seconds=NEVER)
    assert pool.scan(write(tmp_path / "a", b"a")).kind is VerdictKind.CLEAN
    assert pool.down == [members[0]]
    assert pool.ping() is True  # the other answers
    assert pool.down == [members[0]] and up_figure(members[0]) == 0
    flaky.answer = like_clamd
    assert pool.ping() is True
    assert pool.down == [] and up_figure(members[0]) == 1 and up_figure(members[1]) == 1
    before = len(flaky.scans)
    for path in files(tmp_path, 4):
        assert pool.scan(path).kind is VerdictKind.CLEAN
    assert len(flaky.scans) - before == 2  # back in the rotation


def test_ping_is_false_only_when_no_clamd_answers(fakes, tmp_path):
    pool = ClamdPool([nobody(tmp_path, "a"), nobody(tmp_path, "b")])
    assert pool.ping() is False
    assert len(pool.down) == 2
    assert ClamdPool([nobody(tmp_path), client(fakes[0].address)]).ping() is True


def test_a_scan_pings_a_down_clamd_again_and_it_judges_from_the_next_file_on(fakes, tmp_path):
    """No one calls ping() while another clamd scans: the scans themselves PING a down clamd
    again (here at every scan). The scan whose PING finds it back does not give it its file:
    that file's signatures were read without it."""
    flaky, steady = fakes[0], fakes[1]
    flaky.answer = lambda request: HANG_UP
    members = [client(flaky.address), client(steady.address)]
    pool = ClamdPool(members, retry_down_seconds=0)
    assert pool.scan(write(tmp_path / "a", b"a")).kind is VerdictKind.CLEAN
    assert pool.down == [members[0]]
    assert pool.scan(write(tmp_path / "b", b"b")).kind is VerdictKind.CLEAN  # PINGed: no answer
    pings = [request.command for request in flaky.requests].count("PING")
    assert pings == 1 and pool.down == [members[0]]
    flaky.answer = like_clamd
    hung_up_on = len(flaky.scans)
    assert pool.scan(write(tmp_path / "c", b"c")).kind is VerdictKind.CLEAN
    assert pool.down == [] and up_figure(members[0]) == 1
    assert len(flaky.scans) == hung_up_on  # answered PING, but not given that file
    for path in files(tmp_path, 2):
        assert pool.scan(path).kind is VerdictKind.CLEAN
    assert len(flaky.scans) == hung_up_on + 1


def test_a_down_clamd_is_pinged_again_at_most_once_per_interval(fakes, tmp_path):
    flaky = fakes[0]
    flaky.answer = lambda request: HANG_UP
    pool = ClamdPool([client(flaky.address), client(fakes[1].address)],
                     retry_down_seconds=NEVER)
    for path in files(tmp_path, 5):
        assert pool.scan(path).kind is VerdictKind.CLEAN
    assert [request.command for request in flaky.requests] == ["FILDES"]


def test_the_size_limit_is_the_first_clamds(tmp_path):
    pool = ClamdPool([ClamdClient(ClamdAddress(unix_path=str(tmp_path / "a.sock")),
                                  max_file_size=10),
                      ClamdClient(ClamdAddress(unix_path=str(tmp_path / "b.sock")),
                                  max_file_size=1000)])
    limited = pool.over_limit(11)
    assert limited is not None and limited.kind is VerdictKind.UNSCANNABLE
    assert pool.over_limit(10) is None


# --- the signatures a verdict is named with -------------------------------------------------


def version_answer(version: str) -> Callable[[Request], Answer]:
    def answer(request: Request) -> Answer:
        return version.encode() if request.command == "VERSION" else like_clamd(request)
    return answer


def test_loaded_signatures_are_the_oldest_of_the_daemons_up(fakes, tmp_path):
    older, newer = fakes[0], fakes[1]
    older.answer = version_answer("ClamAV 1.4.6/27480/Thu Jan  1 00:00:00 2026")
    newer.answer = version_answer("ClamAV 1.4.6/27481/Fri Jan  2 00:00:00 2026")
    members = [client(newer.address), client(older.address)]
    pool = ClamdPool(members, retry_down_seconds=NEVER)
    loaded = pool.loaded_signatures()
    assert loaded is not None and (loaded.engine, loaded.daily) == ("ClamAV 1.4.6", 27480)
    assert pool.signatures() == loaded and pool.last_signatures == loaded
    assert sample("ssftp_signatures_version", engine="ClamAV 1.4.6", database="27480") == 27480
    # A daemon that is down judges nothing: the newest is then what judges.
    older.answer = lambda request: HANG_UP
    pool.scan(write(tmp_path / "f", b"x"))
    pool.scan(write(tmp_path / "g", b"y"))
    assert pool.down == [members[1]]
    loaded = pool.loaded_signatures()
    assert loaded is not None and loaded.daily == 27481


def test_no_daemon_up_has_no_signatures_to_name(tmp_path):
    pool = ClamdPool([nobody(tmp_path)])
    assert pool.loaded_signatures() is None
    assert pool.last_signatures is None
    with pytest.raises(OSError, match="no clamd of the pool answers"):
        pool.signatures()
    pool.ping()
    with pytest.raises(OSError, match="every one is down"):
        pool.signatures()


def built(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC)


def test_oldest_of_agreeing_daemons_is_what_they_loaded():
    same = Signatures("ClamAV 1.4.6", 27480, built(1), "abc")
    assert oldest([same, Signatures("ClamAV 1.4.6", 27480, built(1), "abc")]) == same
    assert oldest([]) is None


def test_oldest_takes_the_oldest_official_database_with_its_generation():
    old = Signatures("ClamAV 1.4.6", 27480, built(1), "g1")
    new = Signatures("ClamAV 1.4.6", 27481, built(2), "g2")
    assert oldest([new, old]) == old
    none = Signatures("ClamAV 1.4.6", None, None, "g0")  # offline: no official database
    assert oldest([new, none, old]) == none


def test_oldest_takes_the_oldest_engine_and_database_apart():
    """A clamd upgraded before its database, another updated first: the name is older than
    both judges, and matches neither (the safe side: looked at again once they agree)."""
    named = oldest([Signatures("ClamAV 1.4.10", 27480, built(1)),
                    Signatures("ClamAV 1.4.9", 27481, built(2))])
    assert named == Signatures("ClamAV 1.4.9", 27480, built(1))


def test_generations_without_an_order_are_named_as_no_database():
    one = Signatures("ClamAV 1.4.6", 27480, built(1), "aaa")
    other = Signatures("ClamAV 1.4.6", 27480, built(1), "bbb")
    named = oldest([one, other])
    assert named is not None and named.generation is not None
    assert named.generation.startswith(MIXED_GENERATION)
    assert named.database not in {one.database, other.database}
    assert oldest([other, one]) == named  # the same, whatever the order


# --- shared by scan threads -----------------------------------------------------------------


def test_many_threads_share_a_pool_and_every_file_is_judged_once(fakes, tmp_path):
    """One daemon hangs up on every request from its 10th scan on (killed): the scans that
    were on it go to the others, and every file is judged exactly once, rightly."""
    judged: collections.Counter[bytes] = collections.Counter()
    lock = threading.Lock()
    taken = {"count": 0}

    def judging(dies_after: int | None) -> Callable[[Request], Answer]:
        def answer(request: Request) -> Answer:
            with lock:
                if dies_after is not None and request.command == "FILDES":
                    taken["count"] += 1
                if dies_after is not None and taken["count"] > dies_after:
                    return HANG_UP  # its PINGs too: it is gone
                if request.command == "FILDES":
                    judged[request.data or b""] += 1
            return like_clamd(request)
        return answer

    fakes[0].answer = judging(10)
    for fake in fakes[1:]:
        fake.answer = judging(None)
    pool = ClamdPool([client(fake.address) for fake in fakes], retry_down_seconds=NEVER)
    paths = []
    for number in range(120):
        data = (b"%d " % number) + (EICAR if number % 7 == 0 else b"clean\n")
        paths.append(write(tmp_path / "many" / f"{number}.bin", data))
    with ThreadPoolExecutor(max_workers=12) as executor:
        verdicts = list(executor.map(pool.scan, paths))
    for number, verdict in enumerate(verdicts):
        expected = VerdictKind.INFECTED if number % 7 == 0 else VerdictKind.CLEAN
        assert verdict.kind is expected, (number, verdict)
    assert judged == collections.Counter(path.read_bytes() for path in paths)
    assert pool.down == [pool.clients[0]]


def test_a_pools_scan_slots_are_its_daemons_threads_together_or_the_configured_ones(
        fakes, tmp_path):
    fakes[1].answer = lambda request: stats(6) if request.command == "STATS" else like_clamd(
        request)
    members = [client(fake.address) for fake in fakes]
    assert ClamdPool(members).scan_slots() == 4 + 6 + 4
    assert ClamdPool(members, max_scans=5).scan_slots() == 5
    # One that cannot say: unknown, so that a limit set from every answer is not shrunk.
    assert ClamdPool([*members, nobody(tmp_path)]).scan_slots() is None
