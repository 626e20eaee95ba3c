"""server.bandwidth: the schedule a bucket gives requests (on a clock the test moves, so the
delays themselves are asserted, never wall time), the account's rates over the defaults, one
bucket per account shared by its sessions, and a reload's new rate."""

from __future__ import annotations

import asyncio

import pytest

from server import bandwidth
from server.bandwidth import (
    UNLIMITED,
    Direction,
    Throttles,
    TokenBucket,
    rates,
)
from ssftp.config.schema import Bandwidth
from ssftp.metrics import REGISTRY

KIB = 1024
MIB = 1024 * KIB


def limit(up: int | None = None, down: int | None = None) -> Bandwidth:
    return Bandwidth.model_validate({"uploadKiBps": up, "downloadKiBps": down})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_within_the_burst_pass_and_the_next_queue_one_behind_the_other() -> None:
    """1 MiB/s: a burst of 256 KiB (a quarter second) goes at once; pipelined 64 KiB requests
    beyond it each wait 1/16 s longer than the one before, not all the same shortage."""
    clock = Clock()
    bucket = TokenBucket(Direction.UPLOAD, MIB, clock)
    assert bucket.burst == 256 * KIB
    assert [bucket.reserve(64 * KIB) for _ in range(4)] == [0.0] * 4
    assert [bucket.reserve(64 * KIB) for _ in range(3)] == pytest.approx([1 / 16, 2 / 16, 3 / 16])


def test_the_rate_holds_over_time_and_an_idle_account_gets_one_burst_back_not_more() -> None:
    clock = Clock()
    bucket = TokenBucket(Direction.DOWNLOAD, MIB, clock)
    waited = 0.0
    for _ in range(64):  # 4 MiB, one request after the other as a session sends them
        delay = bucket.reserve(64 * KIB)
        clock.now += delay
        waited += delay
    assert waited == pytest.approx(4 - 0.25)  # 4 MiB at 1 MiB/s, less the first burst
    clock.now += 3600  # an hour idle does not save up an hour of bytes
    assert bucket.reserve(256 * KIB) == 0.0
    assert bucket.reserve(MIB) == pytest.approx(1.0)


def test_a_request_larger_than_the_burst_waits_for_the_rest() -> None:
    bucket = TokenBucket(Direction.UPLOAD, 256 * KIB, Clock())
    assert bucket.burst == 64 * KIB
    assert bucket.reserve(256 * KIB) == pytest.approx(0.75)


def test_slow_rates_keep_one_openssh_request_as_burst_and_reads_are_cut_to_it() -> None:
    assert TokenBucket(Direction.DOWNLOAD, 16 * KIB, Clock()).burst == 32 * KIB
    assert TokenBucket(Direction.DOWNLOAD, 16 * KIB, Clock()).max_read == 32 * KIB
    assert TokenBucket(Direction.DOWNLOAD, MIB, Clock()).max_read == 256 * KIB
    assert TokenBucket(Direction.DOWNLOAD, 1 << 30, Clock()).max_read == 4 * MIB  # asyncssh's


def test_an_accounts_keys_replace_the_defaults_one_by_one() -> None:
    default = limit(up=100, down=200)
    assert rates(limit(), default) == (100, 200)
    assert rates(limit(up=5), default) == (5, 200)
    assert rates(limit(up=0, down=7), default) == (0, 7)
    assert rates(limit(down=7), limit()) == (0, 7)
    assert rates(limit(), limit()) == (0, 0)


def test_an_account_shares_its_buckets_between_its_sessions_and_no_limit_is_none() -> None:
    clock = Clock()
    throttles = Throttles(clock)
    limited = limit(up=1024)
    first = throttles.buckets("partner-a", limited, limit())
    second = throttles.buckets("partner-a", limited, limit())
    assert first.download is None
    assert first.upload is second.upload is not None
    assert first.upload.reserve(256 * KIB) == 0.0
    assert second.upload is not None
    assert second.upload.reserve(64 * KIB) == pytest.approx(1 / 16)  # behind the first's
    other = throttles.buckets("partner-b", limited, limit()).upload
    assert other is not None and other is not first.upload
    assert throttles.buckets("partner-c", limit(), limit()) is UNLIMITED


def test_a_reload_changes_the_rate_of_the_accounts_bucket_and_its_queue() -> None:
    """A new rate applies to the same bucket (its sessions' next OPEN asks again): what is
    queued and not yet due takes its time at the new rate; 0 lifts the limit."""
    clock = Clock()
    throttles = Throttles(clock)
    bucket = throttles.buckets("partner-a", limit(down=1024), limit()).download
    assert bucket is not None
    bucket.reserve(2 * MIB)  # due 2 s from now
    faster = throttles.buckets("partner-a", limit(), limit(down=4096))
    assert faster.download is bucket and bucket.rate == 4 * MIB
    assert bucket.burst == MIB
    assert bucket.reserve(0) == pytest.approx(0.25)  # 2 MiB queued: 0.5 s at 4 MiB/s, not 2
    assert bucket.reserve(MIB) == pytest.approx(0.5)
    assert throttles.buckets("partner-a", limit(down=0),
                             limit(down=4096)) is UNLIMITED


def test_take_sleeps_the_delay_and_counts_it_by_direction(monkeypatch) -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(bandwidth.asyncio, "sleep", sleep)
    before = REGISTRY.get_sample_value("ssftp_bandwidth_delay_seconds_total",
                                       {"direction": "upload"}) or 0.0
    bucket = TokenBucket(Direction.UPLOAD, 256 * KIB, Clock())
    asyncio.run(bucket.take(32 * KIB))  # within the burst: no sleep at all
    asyncio.run(bucket.take(256 * KIB))
    assert slept == [pytest.approx(0.875)]
    after = REGISTRY.get_sample_value("ssftp_bandwidth_delay_seconds_total",
                                      {"direction": "upload"})
    assert after == pytest.approx(before + 0.875)
