"""File names as Prefect run parameters.

Prefect's API takes only UTF-8, and a file name need not be UTF-8 (bytes from a foreign writer
on the share): such a name travels hex-encoded behind :data:`HEX_PREFIX`, which no name a run
is given starts with (a scan's and a rescan's start with their area, ``staging/``,
``clean/``...; a release's with the account directory, which the config's rules keep to
plain names). Every other name travels as it is, readable in the Prefect UI.
"""

from __future__ import annotations

import os

HEX_PREFIX = "hex:"


def encode_name(name: str) -> str:
    """``name`` as a parameter: itself when it is UTF-8, else hex-encoded."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return HEX_PREFIX + os.fsencode(name).hex()
    return name


def decode_name(value: str) -> str:
    """The name a parameter carries (:func:`encode_name` undone)."""
    if value.startswith(HEX_PREFIX):
        return os.fsdecode(bytes.fromhex(value.removeprefix(HEX_PREFIX)))
    return value
