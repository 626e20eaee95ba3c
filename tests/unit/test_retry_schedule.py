"""ssftp.retry_schedule: the backoff of files that failed, doubling up to its cap, also across a
long outage."""

from __future__ import annotations

from pathlib import Path

from ssftp.retry_schedule import RetrySchedule

# --- retries --------------------------------------------------------------------------------


def test_backoff_doubles_and_is_capped() -> None:
    schedule = RetrySchedule(initial_seconds=5.0, max_seconds=30.0)
    path = Path("staging/partner-a/f")
    delays = []
    for expected_attempt in range(1, 7):
        assert schedule.failed(path, now=1000.0) == expected_attempt
        next_due = schedule.next_due()
        assert next_due is not None
        delays.append(next_due - 1000.0)
    assert delays == [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]


def test_waiting_due_and_succeeded() -> None:
    schedule = RetrySchedule(initial_seconds=5.0, max_seconds=600.0)
    a, b = Path("a"), Path("b")
    assert schedule.next_due() is None
    assert not schedule.waiting(a, now=0.0)
    assert schedule.failed(a, now=100.0) == 1
    assert schedule.failed(b, now=101.0) == 1
    assert schedule.next_due() == 105.0
    assert schedule.waiting(a, now=104.9)
    assert schedule.due(now=104.9) == []
    assert not schedule.waiting(a, now=105.0)
    assert schedule.due(now=105.0) == [a]
    assert schedule.due(now=105.0) == []  # handed out once per failure
    assert schedule.next_due() == 106.0
    assert schedule.failed(a, now=200.0) == 2  # the attempt count survives the hand-out
    assert schedule.next_due() == 106.0
    assert schedule.due(now=300.0) == [b, a]
    schedule.succeeded(a)
    assert schedule.failed(a, now=400.0) == 1  # success resets the count
    assert schedule.next_due() == 405.0
    schedule.succeeded(a)
    assert schedule.next_due() is None and not schedule.waiting(a, now=400.0)


def test_backoff_survives_a_long_outage() -> None:
    schedule = RetrySchedule(initial_seconds=5.0, max_seconds=600.0)
    path = Path("staging/partner-a/f")
    for attempt in range(1, 1101):
        assert schedule.failed(path, now=float(attempt)) == attempt
    assert schedule.next_due() == 1100.0 + 600.0
