"""The release flow's parameter: a quarantined file's name, whatever its bytes, travels through
Prefect's UTF-8 API and back unchanged."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest

from flows.quarantine import from_parameter, to_parameter


@pytest.mark.parametrize("name", ["acme/x.pdf", "acme/in dir/Q1: ünï ✓.txt",
                                  os.fsdecode(b"acme/caf\xe9.txt")])
def test_a_name_goes_through_the_api_and_back_unchanged(name):
    parameter = to_parameter(PurePosixPath(name))
    parameter.encode("utf-8")
    assert from_parameter(parameter) == PurePosixPath(name)
