"""ssftp.scan.workers: a worker's name is safe in a tag, a log line and a label, and a worker
nobody named is told apart by its host and pid."""

from __future__ import annotations

import os
import socket

import pytest

from ssftp.errors import InvalidValueError
from ssftp.scan.workers import checked_name, default_name, worker_tag


def test_an_unnamed_worker_is_its_host_and_pid():
    assert default_name() == f"{socket.gethostname()}.{os.getpid()}"
    assert checked_name(default_name()) == default_name()


@pytest.mark.parametrize("name", ["scan-1", "eu_west.worker-2", "7", "a" * 127])
def test_a_name_of_safe_characters_is_taken(name):
    assert checked_name(name) == name
    assert worker_tag(name) == f"worker:{name}"


@pytest.mark.parametrize("name", ["", "-leading-dash", ".hidden", "two words", "tab\tname",
                                  "line\nbreak", "slash/name", "colon:name", "é", "a" * 128])
def test_any_other_name_is_refused_naming_what_a_name_may_be(name):
    with pytest.raises(InvalidValueError, match="1 to 127 letters, digits"):
        checked_name(name)
