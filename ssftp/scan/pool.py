"""A pool of clamd daemons, so that the loss of one clamd stops nothing.

One clamd is a single point of failure: when it dies (a crash, the OOM killer, a host
rebooting) every upload waits in staging until it is back. :class:`ClamdPool` spreads scans
over several, round-robin, and is an :class:`~ssftp.scan.engines.Engine` like one
:class:`~ssftp.scan.clamd.ClamdClient`, so the scanner does not know how many there are.

A daemon that is gone is found by the scan that needs it, and that file goes to the next
daemon at once (no backoff: the file did nothing wrong):

- it cannot be connected to, or hangs (the client's ``unreachable`` verdict);
- it answers something that is not a clamd reply (half a reply from a clamd killed
  mid-scan is one);
- the connection broke mid-scan (reset, hung up) and it does not answer PING either.

That daemon is then taken as down (``ssftp_clamd_up{address=...}`` 0 at once: its files go
to the others, so nothing else would show it) and skipped by later scans; a scan PINGs a down
daemon again at most once every :data:`RETRY_DOWN_SECONDS` (that scan waits for the answer,
at most :data:`~ssftp.scan.clamd.PING_TIMEOUT`), and :meth:`ClamdPool.ping` PINGs every one.
Only when every daemon is down is the verdict an outage (``ERROR``, ``unreachable``): the
staging queue then waits for :meth:`ClamdPool.ping`, as it does for one clamd. Every other
answer (clean, infected, unscannable, blocked; an ``ERROR`` reply, a timeout while clamd still
answers PING, a file that could not be read) is about the file, and is the verdict as it is:
asking another daemon to overrule it would turn "try again later" into a second opinion.

The daemons of a pool may have loaded different signatures for a while (each takes an update
by its own RELOAD), and a verdict must never name signatures newer than those that judged
it: :meth:`ClamdPool.loaded_signatures` names the oldest (:func:`oldest`).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ssftp.config.schema import ScanMode
from ssftp.metrics import SIGNATURES, clamd_answered
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.signatures import Signatures
from ssftp.scan.verdict import Verdict, VerdictKind

# How often a scan may PING a daemon taken as down, to take it back once it answers.
RETRY_DOWN_SECONDS = 5.0
# The starts of ClamdClient's error details that say whether clamd itself answered.
UNREADABLE_REPLY = "unreadable clamd reply"
CLAMD_ERROR_REPLY = "clamd error: "
# The generation named when daemons have loaded databases with no order between them.
MIXED_GENERATION = "mixed."
_OLDEST_BUILT = datetime.min.replace(tzinfo=UTC)


def _engine_key(engine: str) -> tuple[tuple[int, ...], str]:
    """``ClamAV 1.4.6`` as (1, 4, 6): engines ordered by version, not by text."""
    return tuple(int(number) for number in re.findall(r"\d+", engine)), engine


def _official_key(loaded: Signatures) -> tuple[bool, int, datetime]:
    """The official database's age: none at all is the oldest, then by daily number."""
    return loaded.daily is not None, loaded.daily or 0, loaded.built or _OLDEST_BUILT


def oldest(loaded: Iterable[Signatures]) -> Signatures | None:
    """What a verdict of any of the daemons that loaded ``loaded`` may be named with: never
    newer than the signatures that judged it, whichever daemon that was. None without any.

    Daemons that agree are named by their signatures. Otherwise each part is the oldest: the
    oldest engine, the oldest official database (none at all counting as the oldest), and the
    generation of the daemons with that oldest official database. When those disagree on
    their generation (a custom signature reached one before the other, or neither has an
    official database: generations are fingerprints, with no order), it is a generation of
    no database (``mixed.<fingerprint>``). The name may then match no daemon's database:
    that is the safe side, as a file named with signatures that are not the loaded ones is
    looked at again once they are (the rescan watcher compares names); what must never be is
    a name newer than the judge, which the rescan after an update would take as already seen.
    """
    distinct = sorted(set(loaded), key=str)
    if len(distinct) <= 1:
        return distinct[0] if distinct else None
    engine = min((each.engine for each in distinct), key=_engine_key)
    official = min(_official_key(each) for each in distinct)
    with_it = [each for each in distinct if _official_key(each) == official]
    generations = sorted({each.generation or "" for each in with_it})
    if len(generations) == 1:
        generation = with_it[0].generation
    else:
        fingerprint = hashlib.sha256("\0".join(generations).encode()).hexdigest()[:12]
        generation = MIXED_GENERATION + fingerprint
    return Signatures(engine=engine, daily=with_it[0].daily, built=with_it[0].built,
                      generation=generation)


class ClamdPool:
    """Several clamd daemons as one :class:`~ssftp.scan.engines.Engine`: each scan goes to
    the next daemon up, round-robin; a daemon found gone is skipped at once (see the module
    docstring). Safe to share between scan threads."""

    name = "clamd"

    def __init__(self, clients: Sequence[ClamdClient], *,
                 retry_down_seconds: float = RETRY_DOWN_SECONDS,
                 max_scans: int | None = None) -> None:
        if not clients:
            raise ValueError("a clamd pool needs at least one clamd")
        self.clients: tuple[ClamdClient, ...] = tuple(clients)
        self.retry_down_seconds = retry_down_seconds
        # The scans all workers together may run on the whole pool at once; None: as many as
        # its daemons have threads (:meth:`scan_slots`).
        self.max_scans = max_scans
        self._lock = threading.Lock()
        self._next = 0
        # The daemons taken as down (by index), each with when a scan may PING it again.
        self._down: dict[int, float] = {}

    # --- which daemon -----------------------------------------------------------------------

    def __str__(self) -> str:
        return f"clamd pool ({', '.join(str(client.address) for client in self.clients)})"

    def _turn(self) -> list[int]:
        """The daemons in the order this scan tries them: from the next one up in the
        rotation, then the rest in turn; the one after it starts the next scan."""
        count = len(self.clients)
        with self._lock:
            rotation = [(self._next + step) % count for step in range(count)]
            first = next((index for index in rotation if index not in self._down), rotation[0])
            self._next = (first + 1) % count
        return [(first + step) % count for step in range(count)]

    def _is_down(self, index: int) -> bool:
        with self._lock:
            return index in self._down

    def _probes_due(self) -> list[int]:
        """The down daemons this scan is the one to PING now: each at most once every
        ``retry_down_seconds``, however many scans pass meanwhile."""
        now = time.monotonic()
        with self._lock:
            due = [index for index, after in self._down.items() if now >= after]
            for index in due:
                self._down[index] = now + self.retry_down_seconds
        return due

    def _mark(self, index: int, answered: bool) -> None:
        with self._lock:
            if answered:
                self._down.pop(index, None)
            else:
                self._down[index] = time.monotonic() + self.retry_down_seconds

    def _mark_down(self, index: int) -> None:
        self._mark(index, False)
        clamd_answered(str(self.clients[index].address), False)

    @property
    def down(self) -> list[ClamdClient]:
        """The daemons taken as down now."""
        with self._lock:
            return [self.clients[index] for index in sorted(self._down)]

    @staticmethod
    def _gone(client: ClamdClient, verdict: Verdict) -> bool:
        """Whether ``verdict`` says the daemon is gone rather than something of the file."""
        if verdict.kind is not VerdictKind.ERROR:
            return False
        if verdict.unreachable or verdict.detail.startswith(UNREADABLE_REPLY):
            return True
        if verdict.timed_out or verdict.detail.startswith(CLAMD_ERROR_REPLY):
            return False  # it answered: the reply, or the PING after the timeout
        # An OSError: the connection broke mid-scan (clamd killed), or the file could not
        # be read on our side. A clamd that answers PING was not the problem.
        return not client.ping()

    # --- the Engine -------------------------------------------------------------------------

    def scan(self, path: Path, mode: ScanMode = "auto") -> Verdict:
        """The verdict of the first daemon of this scan's turn that can give one; ``ERROR``
        and ``unreachable`` when none can, never clean.

        First, the down daemons due a PING get one (see :data:`RETRY_DOWN_SECONDS`); one that
        answers is up again but judges from the next file on, not this one: the signatures
        this file is named with were read while it was down, without it
        (:meth:`loaded_signatures`)."""
        revived = set()
        for index in self._probes_due():
            if self.clients[index].ping():
                self._mark(index, True)
                revived.add(index)
        failures = []
        for index in self._turn():
            client = self.clients[index]
            if index in revived:
                failures.append(f"clamd at {client.address} answers again (it judges from the "
                                "next file on)")
                continue
            if self._is_down(index):
                failures.append(f"clamd at {client.address} is down")
                continue
            verdict = client.scan(path, mode)
            if not self._gone(client, verdict):
                return verdict
            self._mark_down(index)
            failures.append(verdict.detail)
        return Verdict(VerdictKind.ERROR,
                       "no clamd of the pool could scan it: " + "; ".join(failures),
                       unreachable=True)

    def ping(self) -> bool:
        """PING every daemon (each one's ``ssftp_clamd_up`` kept current) and take each back or
        down by its answer: True when any answers."""
        answers = [client.ping() for client in self.clients]
        for index, answered in enumerate(answers):
            self._mark(index, answered)
        return any(answers)

    def scan_slots(self) -> int | None:
        """The scans all workers together may run on the pool at once: as configured, else
        the threads of all its daemons (round-robin spreads the scans evenly over them);
        None when a daemon cannot say (the slots of a limit that exists are then left as they
        are, rather than shrunk while it is down)."""
        if self.max_scans:
            return self.max_scans
        threads = [client.max_threads() for client in self.clients]
        return None if None in threads else sum(t for t in threads if t is not None)

    def over_limit(self, size: int) -> Verdict | None:
        """The daemons of a pool share one limit: the first one's."""
        return self.clients[0].over_limit(size)

    def _up(self) -> list[ClamdClient]:
        with self._lock:
            return [client for index, client in enumerate(self.clients)
                    if index not in self._down]

    def _named(self, loaded: Iterable[Signatures]) -> Signatures | None:
        named = oldest(loaded)
        if named is not None:  # the pool's figure, not that of whichever daemon was last asked
            SIGNATURES.loaded(named.engine, named.database, named.daily,
                              None if named.built is None else named.built.timestamp())
        return named

    def loaded_signatures(self) -> Signatures | None:
        """The signatures a scan starting now is judged by: the :func:`oldest` of those of the
        daemons up (each as :meth:`ClamdClient.loaded_signatures` sees it), so a verdict never
        names signatures newer than its judge's; None when none can say. A daemon that is down
        judges nothing; the scan that finds it back does not give it the file it was asked
        about (:meth:`scan`). What is left: a scan in another thread that asked this before
        the daemon came back and scans after may be given to it, with the signatures it
        loaded on its return (the database it was started on, as it stands then) left out
        of the name."""
        return self._named(loaded for client in self._up()
                           if (loaded := client.loaded_signatures()) is not None)

    @property
    def last_signatures(self) -> Signatures | None:
        """The :func:`oldest` of what the last looks at the daemons up found; None before
        any."""
        return oldest(loaded for client in self._up()
                      if (loaded := client.last_signatures) is not None)

    def signatures(self) -> Signatures:
        """The :func:`oldest` of the signatures the daemons up have loaded now, each asked;
        OSError when none answers. A change of it (the last daemon has taken an update) is
        what starts the rescan of handed-on files."""
        loaded = []
        problems = []
        for client in self._up():
            try:
                loaded.append(client.signatures())
            except OSError as exc:
                problems.append(f"{client.address}: {exc}")
        named = self._named(loaded)
        if named is None:
            raise OSError("no clamd of the pool answers: " + ("; ".join(problems)
                                                              or "every one is down"))
        return named
