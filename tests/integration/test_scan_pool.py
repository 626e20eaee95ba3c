"""ssftp.scan.pool with two real clamds (the offline EICAR signatures), each in a directory of
its own: scans spread over both from several threads, and one clamd SIGKILLed part way (after
a set number of verdicts, from the scan that gave the last of them, not after a sleep) costs
no file anything: every file is judged by a clamd that was alive, rightly, and no verdict is an
error. With both killed the verdict is an outage; one started again answers ping() and scans,
and ``ssftp_clamd_up`` says which is which. The pool's rules one by one, against fakes, are in
tests/unit/test_scan_pool.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ssftp.config.schema import ScanMode
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import TEST_SIGNATURES
from ssftp.scan.pool import ClamdPool
from ssftp.scan.verdict import Verdict, VerdictKind
from testkit.files import EICAR
from tests.support.metrics import sample
from tests.support.scanning import CLAMD_MAX_FILE_SIZE, write

FILES = 40
# Verdicts given before the first clamd is killed.
KILL_AFTER = 12


class Witnessed(ClamdClient):
    """A clamd client that records every verdict it gave, by path, and calls ``after`` with
    each (in the scanning thread, before the pool sees it)."""

    def __init__(self, daemon: ClamdDaemon, after: Callable[[], None]) -> None:
        super().__init__(daemon.address, timeout=30, max_file_size=CLAMD_MAX_FILE_SIZE)
        self.daemon = daemon
        self.after = after
        self.given: dict[Path, list[Verdict]] = {}
        self._given_lock = threading.Lock()

    def scan(self, path: Path, mode: ScanMode = "auto") -> Verdict:
        verdict = super().scan(path, mode)
        with self._given_lock:
            self.given.setdefault(path, []).append(verdict)
        self.after()
        return verdict


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[ClamdDaemon]]:
    started = []
    try:
        for name in ("a", "b"):
            started.append(ClamdDaemon.start(tmp_path / f"clamd-{name}",
                                             max_file_size=CLAMD_MAX_FILE_SIZE,
                                             database=TEST_SIGNATURES))
        yield started
    finally:
        for daemon in started:
            daemon.stop()


def kill(daemon: ClamdDaemon) -> None:
    daemon.process.kill()
    daemon.process.wait()


def test_a_clamd_killed_mid_run_costs_no_file_anything(daemons, tmp_path):
    victim, survivor = daemons
    lock = threading.Lock()
    verdicts = {"count": 0}

    def count_and_kill() -> None:
        with lock:
            verdicts["count"] += 1
            if verdicts["count"] == KILL_AFTER:
                kill(victim)

    clients = [Witnessed(victim, count_and_kill), Witnessed(survivor, count_and_kill)]
    pool = ClamdPool(clients)
    paths = [write(tmp_path / "files" / f"{number}.bin",
                   (b"file %d\n" % number) + (EICAR if number % 4 == 0 else b"fine\n"))
             for number in range(FILES)]
    with ThreadPoolExecutor(max_workers=6) as executor:
        results = dict(zip(paths, executor.map(pool.scan, paths), strict=True))

    assert victim.process.poll() is not None  # it was killed part way
    for number, path in enumerate(paths):
        verdict = results[path]
        expected = VerdictKind.INFECTED if number % 4 == 0 else VerdictKind.CLEAN
        assert verdict.kind is expected, (path.name, verdict)
        # The very verdict a clamd gave about this file: never one the pool made up.
        assert any(verdict is given for client in clients
                   for given in client.given.get(path, [])), path.name
    # The victim judged files before it died; after it, the survivor took them all.
    judged_by_victim = [path for path, given in clients[0].given.items()
                        if any(v.kind is not VerdictKind.ERROR for v in given)]
    assert len(judged_by_victim) <= KILL_AFTER
    assert pool.down == [clients[0]]
    assert sample("ssftp_clamd_up", address=str(victim.address)) == 0

    # Both gone: an outage, never clean.
    kill(survivor)
    outage = pool.scan(paths[1])
    assert outage.kind is VerdictKind.ERROR and outage.unreachable, outage
    assert pool.ping() is False

    # One back (as ssftp up's supervision starts it again): scanning goes on.
    victim.respawn()
    victim.wait_ready(120)
    assert pool.ping() is True
    assert pool.down == [clients[1]]
    assert pool.scan(paths[0]).kind is VerdictKind.INFECTED
    assert pool.scan(paths[1]).kind is VerdictKind.CLEAN
    assert sample("ssftp_clamd_up", address=str(victim.address)) == 1
    assert sample("ssftp_clamd_up", address=str(survivor.address)) == 0


def test_both_clamds_share_the_scans_and_name_the_same_signatures(daemons, tmp_path):
    clients = [ClamdClient(daemon.address, timeout=30) for daemon in daemons]
    pool = ClamdPool(clients)
    for number in range(4):
        assert pool.scan(write(tmp_path / f"{number}.txt", b"fine\n")).kind is VerdictKind.CLEAN
    loaded = pool.loaded_signatures()
    assert loaded is not None and loaded == clients[0].signatures() == clients[1].signatures()
    assert pool.ping() is True
    for daemon in daemons:
        assert sample("ssftp_clamd_up", address=str(daemon.address)) == 1
