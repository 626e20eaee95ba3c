"""Who scans a file: each scanning process is a named worker, the live workers share the staged
files out between them, and every outcome names the worker that judged it.

Several workers share a data root (``ssftp up`` and any ``ssftp worker``, on this host or
others). A verdict, an audit record or a scan run that did not say which one judged it would
leave an operator unable to tell a sick worker from a healthy one. The name is the ``--name``
given to ``ssftp worker``, else ``<host>.<pid>``: unique among the live processes on a data
root without any configuration. It goes into Prefect tags (``worker:<name>``) and a file name
under ``system/workers/``, so it is kept to characters none of them needs to escape.

Sharing, not racing: every worker sees every staged file, and the claim (an atomic rename,
:mod:`ssftp.scan.claims`) decides who scans it. Were each to batch every file, N workers would
make N times the batching and Prefect traffic for the same work, and the losers' runs would
list files they never scanned. So each worker batches only its share: the files whose staging
path hashes to it among the live workers (rendezvous hashing: a worker that joins or leaves
moves only its own share, and a file's retries stay with one worker). A worker is live while
its heartbeat file under ``system/workers/`` is younger than :data:`LEASE_SECONDS`; it beats
every :data:`BEAT_SECONDS` and removes its file when it stops, so the others take its share at
once after a stop and within a lease after a crash. A file nobody has taken within
:data:`TAKEOVER_SECONDS` (its owner is stuck, or the heartbeats lie) is batched by every worker
that sees it, and the claim decides as before: sharing only saves work, it never decides
whether a file is scanned.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from ssftp.errors import InvalidValueError

# Letters, digits, dot, dash and underscore, starting with a letter or digit: what a host name
# and pid make, and nothing a tag filter, a log line or a file name would need to escape.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,126}")
TAG_PREFIX = "worker:"
BEAT_SECONDS = 1.0
LEASE_SECONDS = 5.0
TAKEOVER_SECONDS = 10.0


def default_name() -> str:
    """``<host>.<pid>``: the name of a worker nobody named."""
    return f"{socket.gethostname()}.{os.getpid()}"


def checked_name(name: str) -> str:
    """``name`` when it can name a worker; else the error says what may."""
    if not _NAME.fullmatch(name):
        raise InvalidValueError(
            f"worker name {name!r} is not valid: 1 to 127 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit")
    return name


def worker_tag(name: str) -> str:
    """The Prefect tag of the runs a worker makes (filter by it in the UI)."""
    return f"{TAG_PREFIX}{name}"


def owner_of(key: str, workers: Iterable[str]) -> str:
    """The worker whose share ``key`` (a staged file's sub path) is in: the highest of each
    worker's hash of it, the same on every worker that knows the same live set."""
    return max(workers, key=lambda worker: hashlib.blake2b(
        f"{worker}\0{key}".encode("utf-8", "surrogateescape"), digest_size=8).digest())


class Heartbeats:
    """The live workers of a data root: a file each under ``system/workers/``, touched by its
    worker every :data:`BEAT_SECONDS`, live while younger than :data:`LEASE_SECONDS` (file
    times: the shared filesystem's clock, not each host's)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name

    def beat(self) -> tuple[str, ...]:
        """Say this worker is live; the names of the live workers (this one among them),
        sorted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        mine = self.directory / self.name
        mine.touch()
        live = live_workers(self.directory, mine.stat().st_mtime)
        return tuple(sorted({self.name, *live}))

    def leave(self) -> None:
        """This worker stops: the others take its share from their next beat on."""
        (self.directory / self.name).unlink(missing_ok=True)


def live_workers(directory: Path, now: float) -> dict[str, float]:
    """The workers whose heartbeat under ``directory`` is younger than :data:`LEASE_SECONDS`
    at ``now`` (the filesystem's clock, as the heartbeats' times are), each with its last
    beat; none when there is no such directory yet."""
    beats = {}
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # one that stopped meanwhile
                if _NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    beaten = entry.stat(follow_symlinks=False).st_mtime
                    if now - beaten < LEASE_SECONDS:
                        beats[entry.name] = beaten
    return beats


class Share:
    """Which of the files ready to scan this worker batches now: its own share, and the
    others' once nobody has taken them for :data:`TAKEOVER_SECONDS`."""

    def __init__(self, name: str, key_of: Callable[[Path], str],
                 takeover_seconds: float = TAKEOVER_SECONDS) -> None:
        self.name = name
        self.workers: tuple[str, ...] = (name,)  # the live set, as the last beat found it
        self.takeover_seconds = takeover_seconds
        self._key_of = key_of
        # Another worker's files, and when this one found them ready: oldest first.
        self._others: dict[Path, float] = {}
        # The live set the files put aside were found others' by.
        self._sorted_for: tuple[str, ...] = self.workers

    def mine(self, path: Path) -> bool:
        return len(self.workers) == 1 or owner_of(self._key_of(path), self.workers) == self.name

    def take(self, ready: list[Path], now: float) -> list[Path]:
        """Of ``ready`` (and the files put aside before), those to batch now; the rest wait
        for their owner to claim them (a claimed file is :meth:`forget`-ed)."""
        taken = []
        for path in ready:
            if self.mine(path):
                taken.append(path)
            else:
                self._others.setdefault(path, now)
        if self.workers != self._sorted_for:  # a worker left (or joined): its share moved
            self._sorted_for = self.workers
            taken += [path for path in list(self._others) if self.mine(path)]
            for path in taken:
                self._others.pop(path, None)
        for path, since in list(self._others.items()):
            if now - since < self.takeover_seconds:
                break
            del self._others[path]
            taken.append(path)
        return taken

    def forget(self, path: Path) -> None:
        """``path`` left staging (its owner claimed it)."""
        self._others.pop(path, None)

    def __contains__(self, path: Path) -> bool:
        return path in self._others

    def __len__(self) -> int:
        return len(self._others)
