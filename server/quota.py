"""Per-account quotas (``quota: {maxBytes, maxFiles}``): what an account has in its area,
counted exactly, and the refusals and ``df`` figures that follow from it.

What counts: every regular file under the account's root, at its size (``st_size``), hidden
ones included: its uploads still in its area (staging keeps them until the scanner claims
them), those kept for a resume (``.ssftp-partials/``) and the temp files of uploads in
progress. Directories, links and other types are no files.

SFTPGo keeps counters beside the files, changed as its transfers end, and calls them
approximate: a file moved or removed behind its back (here: every file the scanner claims out
of staging) leaves them wrong until an operator asks for a scan. Here the figure is derived
from the filesystem each time it matters, plus what this process knows better than the disk:

- A *recount* walks the root (:func:`os.fwalk` by directory descriptors, never following a
  link: nothing outside the jail is looked at) in a session's thread, never on the event
  loop. It is made when the last one is more than :data:`RECOUNT_SECONDS` old at an upload's
  OPEN, at its WRITEs and at a ``df``, so files that left (or were put there by others) are
  seen within that time.
- Each upload of this process is an *entry* of its account's :class:`AccountTally`, keyed by
  its file's inode (which neither its publish nor its keeping for a resume changes): what it
  holds now, and what the last recount saw of it. The usage is the last recount's total plus,
  for each entry, what it holds now less what the recount saw. So an upload counts at the
  highest byte its WRITEs reached, as each WRITE arrives (before its bytes are on disk: the
  first ones are answered early, server.sftp_session), a discarded one stops counting at its
  discard, and a published or kept one counts until a recount that began after it settled
  has seen where it went (the scanner takes it, or not yet); then its entry goes.
- A refusal is decided only on a recount made for it: between recounts the figure may be
  high (files that left since), never low for this process's own uploads, so a stale figure
  costs a recount, never a wrong refusal.

What is not exact: the filesystem gives no snapshot. A file another writer renames while a
recount lists its directory may be seen twice or not at all (the same inode twice in one
directory is counted once, and this process's uploads once wherever they are); an upload that
opens or settles during a recount may be counted twice until the next (high, the safe side).
Several ``ssftp serve`` processes on one data root each keep their own entries: another
process's upload is counted by the bytes it has on disk (its temp file grows there) at this
process's recount, so what another process wrote since this one's last recount (at most
:data:`RECOUNT_SECONDS` before an OPEN or WRITE) is not seen, and an account writing through
two processes at once can pass its quota by that much.

An account without a quota has no tally and costs nothing: the session checks one attribute
(an upload's ``quota``, None) per WRITE.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path

from ssftp.config.schema import Quota
from ssftp.metrics import QuotaFigure

# How old a recount may be when an upload opens or writes (or ``df`` is asked): files the
# scanner took out of staging stop counting within it. A recount costs some 4 microseconds a
# file (measured with the directories cached: 0.2 ms for 100 files, 42 ms for 10 000), and a
# staging area holds only what waits for its scan; so an upload pays for at most one every
# two seconds, in its session's thread.
RECOUNT_SECONDS = 2.0
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
# The block of the ``df`` figures of an account with a byte quota (statvfs counts in blocks).
STATVFS_BLOCK = 4096


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int


def human_size(size: int) -> str:
    """``1.0 GiB``: binary units as ``ls -h`` and ``df -h`` use them, one decimal; bytes as
    they are below a KiB."""
    value, unit = float(size), 0
    while unit < len(_UNITS) - 1 and round(value, 1) >= 1024:
        value, unit = value / 1024, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def exceeded(quota: Quota, usage: Usage, more_bytes: int, more_files: int) -> str | None:
    """Why ``more_bytes`` and ``more_files`` beyond ``usage`` would pass ``quota``, or None.
    Only growth is held to it: after a quota was lowered below the usage, a WRITE within an
    upload's size (or a truncation) still goes through."""
    if (quota.max_files is not None and more_files > 0
            and usage.files + more_files > quota.max_files):
        return f"quota exceeded: {usage.files} files of {quota.max_files}"
    if (quota.max_bytes is not None and more_bytes > 0
            and usage.bytes + more_bytes > quota.max_bytes):
        return f"quota exceeded: {human_size(usage.bytes)} of {human_size(quota.max_bytes)}"
    return None


def count_area(root: Path, watched: Container[int]) -> tuple[Usage, dict[int, int]]:
    """The regular files under ``root`` (none when it is gone), and the sizes of those of
    them whose inode ``watched`` holds (the tally's entries), each counted once."""
    total = files = 0
    seen: dict[int, int] = {}
    if not os.path.isdir(root):  # os.fwalk raises for a missing top, not for what is below
        return Usage(0, 0), seen
    for _, _, names, directory in os.fwalk(root, follow_symlinks=False):
        inodes: set[int] = set()
        for name in names:
            try:
                info = os.stat(name, dir_fd=directory, follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since the listing (claimed, removed, renamed)
            if not stat.S_ISREG(info.st_mode) or info.st_ino in inodes:
                continue
            inodes.add(info.st_ino)
            if info.st_ino in watched:
                if info.st_ino in seen:
                    continue
                seen[info.st_ino] = info.st_size
            total += info.st_size
            files += 1
    return Usage(total, files), seen


@dataclass
class _Entry:
    """One upload of this process in its account's tally (see the module's doc)."""

    size: int  # the bytes it holds now: 0 once discarded
    files: int  # 1 while its file exists, 0 once discarded
    seen_size: int = 0  # what the last recount saw of it
    seen_files: int = 0
    # The tally's recount generation when it was published, kept or discarded; None while
    # it is in flight.
    settled: int | None = None


class AccountTally:
    """What one account's area holds, shared by all its sessions in this process; its
    methods are called from the sessions' threads and the event loop, under one lock that is
    never held while the filesystem is asked."""

    def __init__(self, root: Path, username: str, quota: Quota,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.username = username  # whose figures the metrics show
        self.quota = quota  # as last asked (a reload applies at the next OPEN)
        self._clock = clock
        self._lock = threading.Lock()
        self._counted = Usage(0, 0)
        self._counted_at: float | None = None  # when the applied recount began
        self._started = 0  # recounts begun: their generation
        self._applied = 0  # the generation of the recount in _counted
        self._entries: dict[int, _Entry] = {}

    def stale(self) -> bool:
        counted_at = self._counted_at
        return counted_at is None or self._clock() - counted_at > RECOUNT_SECONDS

    def recount(self) -> None:
        """Walk the area (blocking: in a session's thread) and take its figures, unless a
        recount begun later has already been taken."""
        with self._lock:
            self._started += 1
            generation, began = self._started, self._clock()
        # The entries are looked up, never iterated, during the walk: a dict's membership
        # test needs no lock, and an entry added meanwhile is at worst counted twice.
        counted, seen = count_area(self.root, self._entries)
        with self._lock:
            if generation < self._applied:
                return
            self._applied, self._counted, self._counted_at = generation, counted, began
            for inode, entry in list(self._entries.items()):
                if entry.settled is not None and entry.settled < generation:
                    del self._entries[inode]  # settled before the walk began: it saw the result
                else:
                    entry.seen_size = seen.get(inode, 0)
                    entry.seen_files = int(inode in seen)

    def usage(self) -> Usage:
        with self._lock:
            return self._usage()

    def _usage(self) -> Usage:
        total, files = self._counted.bytes, self._counted.files
        for entry in self._entries.values():
            total += entry.size - entry.seen_size
            files += entry.files - entry.seen_files
        return Usage(total, files)

    def admit(self, quota: Quota, size: int, files: int) -> str | None:
        """Why an upload that adds ``files`` files (0 for a resume) and announces ``size``
        bytes (0 when its OPEN does not say) may not begin, or None; in a session's thread."""
        if self.stale():
            self.recount()
        refusal = exceeded(quota, self.usage(), size, files)
        if refusal is not None:
            self.recount()  # decided on a recount made for it
            refusal = exceeded(quota, self.usage(), size, files)
        return refusal

    def hold(self, quota: Quota, inode: int, size: int, *, resumed: bool) -> QuotaHold:
        """The entry of an upload whose file (``inode``, ``size`` bytes so far) was just
        created or, ``resumed``, taken back from the partials: that file was in the area
        already, counted by its entry still held from when it was kept, else by the last
        recount (a resume kept by another process since is seen at the next)."""
        with self._lock:
            entry = self._entries.get(inode) if resumed else None
            if entry is not None:
                entry.settled = None
            elif resumed:
                entry = self._entries[inode] = _Entry(size, 1, seen_size=size, seen_files=1)
            else:
                entry = self._entries[inode] = _Entry(size, 1)
        return QuotaHold(self, quota, entry)

    def _grow(self, quota: Quota, entry: _Entry, size: int) -> str | None:
        with self._lock:
            refusal = exceeded(quota, self._usage(), size - entry.size, 0)
            if refusal is None and size > entry.size:
                entry.size = size
            return refusal

    def _resize(self, entry: _Entry, size: int) -> None:
        with self._lock:
            entry.size = size

    def _settle(self, entry: _Entry, kept: bool) -> None:
        with self._lock:
            entry.settled = self._started
            if not kept:
                entry.size = entry.files = 0


class QuotaHold:
    """One upload's part of its account's tally, held from its OPEN to its close; the quota
    is the one its OPEN saw."""

    def __init__(self, tally: AccountTally, quota: Quota, entry: _Entry) -> None:
        self.tally = tally
        self.quota = quota
        self._entry = entry

    @property
    def size(self) -> int:
        return self._entry.size

    def grow(self, size: int) -> str | None:
        """Count the upload at ``size`` bytes when it grows (a WRITE's end, a truncation
        that extends it), or say why not; a smaller ``size`` changes nothing."""
        return self.tally._grow(self.quota, self._entry, size)

    def truncated(self, size: int) -> None:
        """The upload was cut to ``size`` bytes (a SETSTAT of its size within the quota)."""
        self.tally._resize(self._entry, size)

    def settle(self, kept: bool) -> None:
        """The upload was published or kept for a resume (``kept``), or discarded: counted
        until a recount sees where its file went, or no more."""
        self.tally._settle(self._entry, kept)


class AccountTallies:
    """The tallies of this process, one per account root: its sessions share them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[Path, AccountTally] = {}

    def of(self, root: Path, username: str, quota: Quota) -> AccountTally:
        with self._lock:
            tally = self._tallies.get(root)
            if tally is None:
                tally = self._tallies[root] = AccountTally(root, username, quota)
            tally.username, tally.quota = username, quota
            return tally

    def forget(self, root: Path) -> None:
        """The account has no quota now (a reload took it away): no figures any more. Asked at
        every OPEN for writing of an account without a quota: nothing but a look at an empty
        dict while no account has one."""
        if self._tallies:
            with self._lock:
                self._tallies.pop(root, None)

    def figures(self) -> list[QuotaFigure]:
        """Each tally's account, usage and quota (ssftp.metrics.QuotaFigures), as of its last
        recount plus the uploads in flight: a scrape walks no directory."""
        with self._lock:
            tallies = list(self._tallies.values())
        figures: list[QuotaFigure] = []
        for tally in tallies:
            usage = tally.usage()
            figures.append((tally.username, usage.bytes, usage.files, tally.quota.max_bytes,
                            tally.quota.max_files))
        return figures


_TALLIES = AccountTallies()


def account_tallies() -> AccountTallies:
    """The one registry of the process: an account's sessions may be on many connections."""
    return _TALLIES


def statvfs_within(host: os.statvfs_result, quota: Quota, usage: Usage) -> os.statvfs_result:
    """What ``df`` shows the account: its byte quota in :data:`STATVFS_BLOCK` blocks (the
    used ones rounded up) and its file quota, in place of the host's figures; a limit the
    quota does not set stays the host's."""
    fields = list(host)
    if quota.max_bytes is not None:
        blocks = quota.max_bytes // STATVFS_BLOCK
        free = max(0, blocks - -(-usage.bytes // STATVFS_BLOCK))
        fields[0:5] = [STATVFS_BLOCK, STATVFS_BLOCK, blocks, free, free]
    if quota.max_files is not None:
        free = max(0, quota.max_files - usage.files)
        fields[5:8] = [quota.max_files, free, free]
    return os.statvfs_result(fields)
