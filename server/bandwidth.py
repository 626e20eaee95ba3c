"""Bandwidth limits per account (``bandwidth``, ``limits.bandwidth``): a token bucket per
account and direction, shared by all of the account's sessions in this process.

The bucket keeps a virtual clock instead of a token count (GCRA, the "generic cell rate
algorithm"): ``due`` is when every byte reserved so far has passed at the rate. A request of
``n`` bytes moves it ``n / rate`` on from ``max(now, due)`` and waits until ``due`` less the
burst's worth of time, so requests queue up one behind the other in the order they reserved,
from any session of the account, rather than all computing the same wait from the same
shortage. The wait is an ``asyncio.sleep`` before the reply (a READ's, once its data is read;
a WRITE's, before its data is written): asyncssh serves a session's requests one after the
other, so the session reads no more requests (and its channel's window, then TCP, holds the
client back) until its turn. No timer refills anything, and an idle account costs nothing.

The burst is a quarter of a second at the rate, and at least 32 KiB (one OpenSSH request):
small enough that a transfer keeps to the rate within a fraction of a second, large enough
that an idle account's small request does not wait. A download's READ is served at most one
burst at a time when limited, so that its reply is not a pause of seconds followed by
megabytes at once.

The unlimited path is what matters most: a session holds ``None`` instead of a bucket, and a
request costs one ``is None`` check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from enum import StrEnum
from typing import NamedTuple

from asyncssh.sftp import MAX_SFTP_READ_LEN

from ssftp.config.schema import Bandwidth
from ssftp.metrics import BANDWIDTH_DELAY_SECONDS

KIB = 1024
BURST_SECONDS = 0.25
MIN_BURST_BYTES = 32 * KIB


class Direction(StrEnum):
    UPLOAD = "upload"
    DOWNLOAD = "download"


class TokenBucket:
    """One account's bytes in one direction, at ``rate`` bytes per second."""

    def __init__(self, direction: Direction, rate: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.direction = direction
        self._clock = clock
        self._due = clock()
        self.rate = self.burst = 0.0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """A reload's new rate: what is already reserved and not yet due takes the time it
        takes at the new rate (an account raised from 10 KiB/s to 10 MiB/s does not sit out
        its old queue)."""
        now = self._clock()
        if self.rate and self._due > now:
            self._due = now + (self._due - now) * self.rate / rate
        self.rate = rate
        self.burst = max(rate * BURST_SECONDS, MIN_BURST_BYTES)

    @property
    def max_read(self) -> int:
        """The largest READ a limited download is served (a shorter reply is legal)."""
        return min(int(self.burst), MAX_SFTP_READ_LEN)

    def reserve(self, size: int) -> float:
        """Take ``size`` bytes; the seconds the caller must wait before they go."""
        now = self._clock()
        self._due = max(self._due, now) + size / self.rate
        return max(0.0, self._due - now - self.burst / self.rate)

    async def take(self, size: int) -> None:
        """Wait for ``size`` bytes' turn."""
        delay = self.reserve(size)
        if delay:
            BANDWIDTH_DELAY_SECONDS.labels(direction=self.direction).inc(delay)
            await asyncio.sleep(delay)


class Buckets(NamedTuple):
    """What a session applies now: None where the direction is unlimited."""

    upload: TokenBucket | None
    download: TokenBucket | None


UNLIMITED = Buckets(None, None)


def rates(own: Bandwidth, default: Bandwidth) -> tuple[int, int]:
    """KiB per second up and down (0: unlimited): each of the account's keys, where it gives
    one, else ``limits.bandwidth``'s."""
    upload = own.upload_ki_bps if own.upload_ki_bps is not None else default.upload_ki_bps
    download = (own.download_ki_bps if own.download_ki_bps is not None
                else default.download_ki_bps)
    return upload or 0, download or 0


class Throttles:
    """The buckets of one server, by account and direction.

    A bucket stays once made (one small object per limited account and direction, a set the
    config bounds): its sessions come and go, and a new one must find the account's queue.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, Direction], TokenBucket] = {}

    def buckets(self, username: str, own: Bandwidth, default: Bandwidth) -> Buckets:
        """The account's buckets at the rates configured now, made or changed as needed."""
        upload, download = rates(own, default)
        if not upload and not download:
            return UNLIMITED
        return Buckets(self._bucket(username, Direction.UPLOAD, upload),
                       self._bucket(username, Direction.DOWNLOAD, download))

    def _bucket(self, username: str, direction: Direction, kib_per_second: int) \
            -> TokenBucket | None:
        if not kib_per_second:
            return None
        rate = kib_per_second * KIB
        bucket = self._buckets.get((username, direction))
        if bucket is None:
            bucket = self._buckets[username, direction] = TokenBucket(direction, rate,
                                                                      self._clock)
        elif bucket.rate != rate:
            bucket.set_rate(rate)
        return bucket
