"""Claims: the scanner takes a staged file out of every client's reach before it scans it.

A claim is a rename into ``staging/.ssftp-claims/<owner>/<n>/<sub path>``. It is atomic, and
it frees the staged name: a client that uploads the same name again creates a new file, which is
scanned on its own. So the bytes that were scanned are exactly the bytes that are moved on, and
no client can reach a file between its verdict and its move (names starting with ``.ssftp-`` are
outside every jail).

``<owner>`` names the claiming process (host, pid and the pid's start time), so a later start
can tell the claims that nobody holds any more (their process died) from those of a live
scanner on another instance sharing the data root. ``<n>`` makes every claim's path unique, so
a claim never replaces another.

A :class:`Claim` is what the scanner routes: it releases itself back to staging or moves itself
on (to clean/, or to quarantine/ behind the verdict record that reserved its name:
:func:`reserve_quarantine_name`), and takes its directories with it. Where a verdict sends it
is :mod:`ssftp.scan.router`'s decision, not the claim's.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ssftp.layout import CLAIMS_DIR
from ssftp.moves import fsync_directory, move_atomically, write_durably
from ssftp.procfs import ProcessId
from ssftp.scan.router import quarantine_names, record_content, record_path

# Claims of another host are taken over only when its owner directory has not been touched
# for this long (a live scanner touches it every HEARTBEAT_SECONDS): a worker on another host
# that dies gives its claimed files up within a minute (beyond one machine, that is every
# other worker's case), while a live one would have to miss twelve beats in a row, or the
# hosts' clocks differ by a minute, for its files to be taken over. Taken over from a live
# owner is scanned twice, never published twice: the rename of the claim decides.
FOREIGN_LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = 5.0


def process_owner(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    process = ProcessId.of(pid)
    return f"{socket.gethostname()}.{pid}.{process.start if process else 0}"


def _owner_is_alive(owner: str, age_seconds: float) -> bool:
    try:
        host, pid_text, started = owner.rsplit(".", 2)
        pid = int(pid_text)
    except ValueError:
        return age_seconds < FOREIGN_LEASE_SECONDS
    if host != socket.gethostname():
        return age_seconds < FOREIGN_LEASE_SECONDS
    process = ProcessId.of(pid)
    return process is not None and str(process.start) == started


def _prune(directory: Path, owner_directory: Path) -> None:
    """Remove empty directories from ``directory`` up to (not including) the owner's."""
    while directory != owner_directory and owner_directory in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def sub_path_of(staging: Path, path: Path) -> PurePosixPath:
    """The staging sub path of a staged file, or of a claimed one (any owner's)."""
    relative = PurePosixPath(path.relative_to(staging))
    if relative.parts[0] == CLAIMS_DIR:
        # .ssftp-claims/<owner>/<n>/<sub path>
        return PurePosixPath(*relative.parts[3:])
    return relative


@dataclass(frozen=True)
class Claim:
    """A claimed file, and the only way it leaves its claim: back to staging, or on to where
    its verdict sends it. Either way the claim's directories go with it, so what is left
    below the owner's directory is exactly what this process still holds."""

    path: Path
    # Where the file was staged: it goes back there when it could not be scanned this time.
    origin: Path
    # Relative to staging (``<account dir>/<sub path>``); the same below clean/ or quarantine/.
    sub_path: PurePosixPath
    # The claiming process's directory (``.ssftp-claims/<owner>``): pruning stops there.
    owner_directory: Path = field(repr=False)
    # When the file last changed while it waited to be claimed (its ctime then: the publish
    # of an upload, or a download, or a SETSTAT right after): for ``ssftp_scan_seconds``. Not
    # the mtime, which a client that keeps times (``put -p``) sets to the source's.
    staged_at: float | None = None

    def release(self) -> Path:
        """Put the file back in staging after a failed scan, without replacing anything.

        Returns where it is now: its staged name, or still the claim when that name has been
        taken by a newer upload meanwhile (the claim is then retried from where it is).
        """
        self.origin.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.path, self.origin)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.EPERM, errno.EOPNOTSUPP):
                return self.path
            raise
        os.unlink(self.path)
        fsync_directory(self.origin.parent)
        _prune(self.path.parent, self.owner_directory)
        return self.origin

    def move_to(self, target: Path) -> Path:
        """Move the file to ``target`` (replacing an older file there); returns ``target``."""
        move_atomically(self.path, target)
        _prune(self.path.parent, self.owner_directory)
        return target

    def quarantine(self, target: Path, record: Path) -> Path:
        """Move the file to ``target``, beside its verdict record at ``record``.

        The record is complete before the file appears (it is what reserved the name), so a
        quarantined file always has one; a crash in between leaves a record whose file is
        still claimed, and rescanned. If the move fails, the record goes: left behind it would
        keep the name taken, and the rescanned file would land as ``name (2).ext`` beside a
        record of nothing.
        """
        try:
            return self.move_to(target)
        except OSError:
            record.unlink(missing_ok=True)
            raise


def reserve_quarantine_name(target: Path, record: Path, content: bytes) -> bool:
    """Take the name ``target`` in quarantine for one file, by creating its verdict record
    ``record`` with ``content``; False when the name is taken.

    The record is created exclusively and complete (written whole to a temp name, then linked,
    which refuses a name that exists): two scans (threads, instances) can never pick the same
    name, and a crash never leaves an empty record that keeps a name taken for nothing.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return False
    try:
        write_durably(record, content, replace=False)
    except FileExistsError:
        return False
    if not target.exists():
        return True
    # A file without a record took the name meanwhile: the record is not its.
    record.unlink()
    return False


def reserve_quarantine(wished: Path, record_for: Callable[[Path], dict[str, object]]) -> Path:
    """The first of :func:`~ssftp.scan.router.quarantine_names` of ``wished`` that is free,
    taken by writing the verdict record that ``record_for(name)`` says the file will have
    there; raises OSError when no record can be written (a full disk)."""
    for target in quarantine_names(wished):
        if reserve_quarantine_name(target, record_path(target),
                                   record_content(record_for(target))):
            return target
    raise AssertionError("quarantine_names never ends")


class Claims:
    """This process's claims, below ``staging/.ssftp-claims/<owner>``."""

    def __init__(self, staging: Path, owner: str | None = None) -> None:
        self.staging = staging
        self.root = staging / CLAIMS_DIR
        self.directory = self.root / (owner or process_owner())
        self._counter = itertools.count()

    def sub_path_of(self, path: Path) -> PurePosixPath:
        """The staging sub path of a staged file, or of a claimed one (any owner's)."""
        return sub_path_of(self.staging, path)

    def claim(self, path: Path) -> Claim | None:
        """Take ``path`` (staged, or claimed by a dead owner); None when it is gone already."""
        sub_path = self.sub_path_of(path)
        if not sub_path.parts:
            raise ValueError(f"{path} is not a file below {self.staging}")
        slot = self.directory / f"{next(self._counter)}-{secrets.token_hex(6)}"
        target = slot / sub_path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Before the rename, which is a change of its own.
            staged_at = os.lstat(path).st_ctime
            os.rename(path, target)
        except FileNotFoundError:
            _prune(target.parent, self.directory)
            return None
        return Claim(target, self.staging / sub_path, sub_path, self.directory, staged_at)

    def heartbeat(self) -> None:
        """Show other instances sharing the data root that this owner is alive (its
        directory's mtime is the lease they respect)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.utime(self.directory)

    def held(self) -> list[Path]:
        """This process's claimed files (after a scan run died half-way through)."""
        return [Path(directory, name) for directory, _, names in os.walk(self.directory)
                for name in names]

    def _dead_owners(self) -> list[Path]:
        """The owner directories of dead scanners. One that goes while this looks (another
        scanner took its last claim over and removed it) is none."""
        now = time.time()
        dead = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    owner_dir = Path(entry.path)
                    if (owner_dir != self.directory and entry.is_dir(follow_symlinks=False)
                            and not _owner_is_alive(entry.name,
                                                    now - entry.stat().st_mtime)):
                        dead.append(owner_dir)
        return dead

    def orphaned(self) -> list[Path]:
        """Files claimed by processes that no longer exist (a crash mid-scan): scan them again."""
        return [
            Path(directory, name)
            for owner_dir in self._dead_owners()
            for directory, _, names in os.walk(owner_dir)
            for name in names
        ]

    def remove_empty_orphans(self) -> None:
        """Drop the empty directory trees that dead owners left behind."""
        for owner_dir in self._dead_owners():
            for directory, _, _ in sorted(os.walk(owner_dir), key=lambda entry: -len(entry[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
