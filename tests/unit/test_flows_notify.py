"""flows.notify's redelivery schedule. The flow itself, on a real Prefect server and a real HTTP
receiver, is in tests/integration/test_flows_notify.py."""

from __future__ import annotations

import itertools

from flows.notify import redelivery_delay


def test_redelivery_waits_longer_each_time_up_to_an_hour() -> None:
    delays = [redelivery_delay(attempts) for attempts in range(1, 12)]
    assert delays[0] == 60
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == 3600
