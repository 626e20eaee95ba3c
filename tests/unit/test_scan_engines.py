"""Engines: a file is clean only when every engine says clean, and each one's answer is kept.

The engines here are plain objects with fixed answers (the unit tier runs no daemons); the
real clamd and c-icap together are tests/e2e/test_engines.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.config.schema import SsftpConfig
from ssftp.errors import NoClamdError
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.engines import Engines, combine, configured_engines, engines_in
from ssftp.scan.pool import ClamdPool
from ssftp.scan.signatures import Signatures
from ssftp.scan.verdict import Verdict, VerdictKind, finding

CLEAN = Verdict(VerdictKind.CLEAN, "OK")
EICAR = finding("Eicar-Test-Signature")
ENCRYPTED = finding("Heuristics.Encrypted.Zip")
DOWN = Verdict(VerdictKind.ERROR, "icap://h:1344/av: connection refused", unreachable=True)
SLOW = Verdict(VerdictKind.ERROR, "timed out", timed_out=True)
TOO_BIG = Verdict(VerdictKind.UNSCANNABLE, "over the ICAP server's limit")


@dataclass
class Fixed:
    """An engine that gives one answer and counts what it was asked."""

    name: str
    answer: Verdict
    answers_ping: bool = True
    asked: list[Path] = field(default_factory=list)

    def scan(self, path: Path, mode: str = "auto") -> Verdict:
        self.asked.append(path)
        return self.answer

    def ping(self) -> bool:
        return self.answers_ping

    def over_limit(self, size: int) -> Verdict | None:
        return None

    def loaded_signatures(self) -> Signatures | None:
        return None

    def signatures(self) -> Signatures:
        raise OSError("names none")

    @property
    def last_signatures(self) -> Signatures | None:
        return None


@pytest.mark.parametrize(("clamd", "icap", "kind"), [
    (CLEAN, CLEAN, VerdictKind.CLEAN),
    (CLEAN, EICAR, VerdictKind.INFECTED),
    (EICAR, DOWN, VerdictKind.INFECTED),
    (CLEAN, DOWN, VerdictKind.ERROR),
    (ENCRYPTED, DOWN, VerdictKind.ERROR),
    (ENCRYPTED, CLEAN, VerdictKind.UNSCANNABLE),
    (TOO_BIG, CLEAN, VerdictKind.UNSCANNABLE),
])
def test_the_worst_answer_stands(clamd, icap, kind):
    verdict = combine([("clamd", clamd), ("icap", icap)])
    assert verdict.kind is kind
    assert verdict.engines == {"clamd": clamd.detail, "icap": icap.detail}


def test_an_engine_that_could_not_answer_keeps_an_encrypted_file_from_passing():
    """allowEncrypted passes an encrypted file only when every engine has judged it: an
    engine that did not answer leaves it an error (retried), not encrypted-unscannable."""
    verdict = combine([("clamd", ENCRYPTED), ("icap", DOWN)])
    assert (verdict.kind, verdict.encrypted, verdict.unreachable) == (VerdictKind.ERROR, False,
                                                                      True)


def test_an_unscannable_answer_not_about_encryption_outranks_an_encrypted_one():
    verdict = combine([("clamd", ENCRYPTED), ("icap", TOO_BIG)])
    assert verdict.kind is VerdictKind.UNSCANNABLE and not verdict.encrypted


def test_a_timeout_anywhere_is_kept_for_its_log_line():
    assert combine([("clamd", CLEAN), ("icap", SLOW)]).timed_out


def test_every_engine_is_asked_and_pinged():
    clamd, icap = Fixed("clamd", EICAR), Fixed("icap", CLEAN, answers_ping=False)
    engines = Engines([clamd, icap])
    assert engines.scan(Path("/x")).kind is VerdictKind.INFECTED
    assert clamd.asked == icap.asked == [Path("/x")]
    assert engines.ping() is False
    assert engines_in(engines) == (clamd, icap)
    assert engines_in(clamd) == (clamd,) and engines_in(None) == ()
    with pytest.raises(OSError, match="names none"):
        engines.signatures()


def test_no_engine_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        Engines([])


def _config(**changes) -> SsftpConfig:
    return SsftpConfig.model_validate(changes)


def test_the_config_builds_clamd_then_icap():
    config = _config(icap={"servers": ["icap://127.0.0.1/avscan"]})
    engines = configured_engines(config, [ClamdAddress.parse("127.0.0.1:3310")])
    assert [engine.name for engine in engines.engines] == ["clamd", "icap"]
    assert str(engines.engines[1]) == "ICAP at icap://127.0.0.1:1344/avscan"


def test_icap_alone_when_clamd_is_switched_off():
    config = _config(clamav={"enabled": False}, icap={"servers": ["icap://h:1345/av"]})
    assert [engine.name for engine in configured_engines(config, []).engines] == ["icap"]


def test_clamd_on_and_none_known_is_refused():
    with pytest.raises(NoClamdError, match=r"clamav\.address"):
        configured_engines(_config(), [])


def test_a_list_of_clamds_is_one_pool():
    clamds = [ClamdAddress.parse("/run/a.sock"), ClamdAddress.parse("clamd-b:3310")]
    (pool,) = configured_engines(_config(), clamds).engines
    assert isinstance(pool, ClamdPool)
    assert [str(client.address) for client in pool.clients] == ["/run/a.sock",
                                                                 "tcp://clamd-b:3310"]


def test_max_concurrent_scans_goes_to_the_clamd_or_to_the_pool_as_a_whole():
    config = _config(clamav={"maxConcurrentScans": 3})
    (one,) = configured_engines(config, [ClamdAddress.parse("clamd:3310")]).engines
    assert isinstance(one, ClamdClient) and one.max_scans == 3
    clamds = [ClamdAddress.parse("a:3310"), ClamdAddress.parse("b:3310")]
    (pool,) = configured_engines(config, clamds).engines
    assert isinstance(pool, ClamdPool) and pool.max_scans == 3
    assert [member.max_scans for member in pool.clients] == [None, None]
    (unset,) = configured_engines(_config(), [ClamdAddress.parse("clamd:3310")]).engines
    assert isinstance(unset, ClamdClient) and unset.max_scans is None
