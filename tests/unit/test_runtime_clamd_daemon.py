"""ssftp.runtime.clamd_daemon without a clamd: the restart backoff, and the stale socket check
(a socket nobody answers on is removed; one something answers on is kept and named). The
daemon started for real is in tests/integration/test_runtime_clamd_daemon.py."""

from __future__ import annotations

import socket

import pytest

from ssftp.errors import ClamdStartError
from ssftp.runtime.clamd_daemon import (
    RestartBackoff,
    clear_stale_socket,
)

# --- the restart backoff and exit descriptions -------------------------------------------------


def test_restart_backoff_doubles_up_to_its_limit():
    backoff = RestartBackoff(first_seconds=1, longest_seconds=60, stable_after_seconds=300)
    delays = [backoff.next_delay(ran_seconds=2) for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_restart_backoff_starts_over_after_a_clamd_ran_a_while():
    backoff = RestartBackoff(first_seconds=1, longest_seconds=60, stable_after_seconds=300)
    for _ in range(5):
        backoff.next_delay(ran_seconds=2)
    assert backoff.next_delay(ran_seconds=301) == 1
    assert backoff.next_delay(ran_seconds=2) == 2


# --- stale sockets -------------------------------------------------------------------------


def test_a_socket_nobody_answers_on_is_removed(tmp_path):
    path = tmp_path / "clamd.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a SIGKILLed clamd leaves
    clear_stale_socket(path)
    assert not path.exists()
    clear_stale_socket(path)  # nothing there: nothing to do


def test_a_socket_something_answers_on_is_kept_and_named(tmp_path):
    path = tmp_path / "clamd.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ClamdStartError, match=f"{path}.*already answers") as refused:
            clear_stale_socket(path)
    assert "\n" not in str(refused.value)
    assert path.exists()
