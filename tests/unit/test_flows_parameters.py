"""flows.parameters: a file's name, whatever its bytes, travels through Prefect's UTF-8 API and
back unchanged, and reads as itself in the UI whenever it can."""

from __future__ import annotations

import os

import pytest

from flows.parameters import decode_name, encode_name


@pytest.mark.parametrize("name", ["staging/acme/x.pdf", "acme/in dir/Q1: ünï ✓.txt",
                                  os.fsdecode(b"clean/acme/caf\xe9.txt")])
def test_a_name_goes_through_the_api_and_back_unchanged(name):
    parameter = encode_name(name)
    parameter.encode("utf-8")
    assert decode_name(parameter) == name
    assert (parameter == name) is name.isprintable()  # only a name that is not UTF-8 changes
