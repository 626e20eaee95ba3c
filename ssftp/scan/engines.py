"""The engines a file is scanned with, and the one verdict they give together.

An :class:`Engine` is anything that judges the bytes at a path: a clamd
(:class:`~ssftp.scan.clamd.ClamdClient`), a pool of them (:class:`~ssftp.scan.pool.ClamdPool`),
an ICAP server pool (:class:`~ssftp.scan.icap.IcapClient`). :class:`Engines` asks each one and
is an engine itself, so the scanner, the rescan and a release never know how many there are.

A file is clean only when every engine says clean. Otherwise the worst answer stands
(:func:`~ssftp.scan.verdict.worst`): malware found by any engine is infected whatever the others
said; an engine that could not answer makes the file an error (scanned again), even when another
could not look inside it (an encrypted archive the owner allows must still be judged by every
engine before it passes as "not inspected").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from ssftp.addresses import ClamdAddress
from ssftp.config.schema import ScanMode, SsftpConfig
from ssftp.errors import NoClamdError
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.icap import IcapClient
from ssftp.scan.pool import ClamdPool
from ssftp.scan.signatures import Signatures
from ssftp.scan.verdict import Verdict, VerdictKind, worst

# The engines there are, by name: /healthz checks each.
ENGINE_NAMES = ("clamd", "icap")


class Engine(Protocol):
    """One scanning engine. ``scan`` never raises: every failure is a verdict that is not
    clean (:mod:`ssftp.scan.verdict`)."""

    @property
    def name(self) -> str:
        """The key of its answer in a verdict's ``engines`` ("clamd", "icap")."""
        ...

    def scan(self, path: Path, mode: ScanMode = "auto") -> Verdict: ...

    def ping(self) -> bool:
        """It answers now (clamd's PING, ICAP's OPTIONS): the staging queue's outage probe."""
        ...

    def over_limit(self, size: int) -> Verdict | None:
        """The verdict on a file too large for it, decided before a byte is read."""
        ...

    def loaded_signatures(self) -> Signatures | None:
        """The signatures a scan starting now is judged by, where the engine can say."""
        ...

    def signatures(self) -> Signatures:
        """Asks now which signatures it has loaded (the rescan watches them change); raises
        OSError when it cannot say (an ICAP server names none)."""
        ...

    @property
    def last_signatures(self) -> Signatures | None:
        """What the last look at its signatures found, however old (/healthz's age check)."""
        ...


def combine(answers: Sequence[tuple[str, Verdict]]) -> Verdict:
    """The one verdict of several engines' answers, each engine's own answer kept in
    ``engines`` (its detail: ``OK``, ``Eicar-Signature FOUND``, an error)."""
    return replace(
        worst(verdict for _, verdict in answers),
        unreachable=any(v.unreachable for _, v in answers if v.kind is VerdictKind.ERROR),
        timed_out=any(v.timed_out for _, v in answers),
        inspected=all(v.inspected for _, v in answers),
        engines={name: verdict.detail for name, verdict in answers})


class Engines:
    """Every configured engine, asked in turn: an :class:`Engine` whose verdict is clean only
    when every one of them says clean."""

    name = "engines"

    def __init__(self, engines: Sequence[Engine]) -> None:
        if not engines:
            raise ValueError("at least one scanning engine is needed")
        self.engines = tuple(engines)

    def scan(self, path: Path, mode: ScanMode = "auto") -> Verdict:
        return combine([(engine.name, engine.scan(path, mode)) for engine in self.engines])

    def ping(self) -> bool:
        # Each is asked even after one fails: every engine's up-metric stays current.
        return all([engine.ping() for engine in self.engines])

    def over_limit(self, size: int) -> Verdict | None:
        for engine in self.engines:
            if (limited := engine.over_limit(size)) is not None:
                return limited
        return None

    def loaded_signatures(self) -> Signatures | None:
        for engine in self.engines:
            if (loaded := engine.loaded_signatures()) is not None:
                return loaded
        return None

    def signatures(self) -> Signatures:
        """Those of the first engine that names its signatures (clamd's)."""
        failures = []
        for engine in self.engines:
            try:
                return engine.signatures()
            except OSError as exc:
                failures.append(f"{engine}: {exc}")
        raise OSError("; ".join(failures))

    @property
    def last_signatures(self) -> Signatures | None:
        for engine in self.engines:
            if (seen := engine.last_signatures) is not None:
                return seen
        return None

    def __str__(self) -> str:
        return ", ".join(map(str, self.engines))


def engines_in(scanning: Engine | None) -> tuple[Engine, ...]:
    """Each engine of what the scans use (:class:`Engines`, one engine, or None with
    scanning off): start-up warns and /healthz checks them one by one."""
    if isinstance(scanning, Engines):
        return scanning.engines
    return () if scanning is None else (scanning,)


def configured_engines(config: SsftpConfig, clamds: Sequence[ClamdAddress]) -> Engines:
    """The engines a config scans with: ``clamds`` (the configured ones, or the one ``ssftp up``
    started: the caller knows which) unless ``clamav.enabled`` is false, then ``icap.servers``.
    Raises NoClamdError when clamd is on and none is known."""
    settings = config.clamav
    engines: list[Engine] = []
    if settings.enabled:
        if not clamds:
            raise NoClamdError("scanning is on but no clamd is configured: set clamav.address "
                               "(a socket path or host:port), or use `ssftp up`")
        max_scans = settings.max_concurrent_scans
        clients = [ClamdClient(address, timeout=settings.timeout,
                               max_file_size=settings.max_file_size,
                               max_scans=max_scans if len(clamds) == 1 else None)
                   for address in clamds]
        engines.append(clients[0] if len(clients) == 1
                       else ClamdPool(clients, max_scans=max_scans))
    if config.icap.servers:
        engines.append(IcapClient(config.icap.addresses, timeout=config.icap.timeout,
                                  max_file_size=settings.max_file_size))
    return Engines(engines)
