"""ssftp.names: the names files get in clean/ and quarantine/ (unit tests, no disk)."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest

from ssftp.names import NAME_MAX, fitting, numbered, safe_name, safe_sub_path


def size(name: str) -> int:
    return len(os.fsencode(name))


@pytest.mark.parametrize("name", ["report.csv", "ünï cødé ✓.bin", "a:b;c'd\"e.txt",
                                  ".hidden", "x" * NAME_MAX])
def test_a_name_every_consumer_carries_stays_as_it_is(name: str) -> None:
    assert safe_name(name) == name


@pytest.mark.parametrize("raw", [b"latin1-caf\xe9.txt", b"new\nline.txt",
                                 b"esc\x1b]0;PWNED\x07", "c1-\u009b.csv".encode(),
                                 b"del\x7f.txt"])
def test_other_names_become_safe_deterministic_and_unique(raw: bytes) -> None:
    name = os.fsdecode(raw)
    safe = safe_name(name)
    assert safe != name and safe == safe_name(name)
    assert safe.encode("utf-8") and all(ch.isprintable() for ch in safe)
    assert safe_name(safe) == safe


def test_look_alikes_keep_apart() -> None:
    """Both become ``caf_`` once made safe; their hashes tell them apart."""
    e_acute = safe_name(os.fsdecode(b"caf\xe9.txt"))
    e_grave = safe_name(os.fsdecode(b"caf\xe8.txt"))
    assert e_acute != e_grave
    assert e_acute.startswith("caf_~") and e_grave.startswith("caf_~")


def test_a_safe_name_keeps_its_extension_and_fits() -> None:
    assert safe_name(os.fsdecode(b"caf\xe9.txt")).startswith("caf_~")
    assert safe_name(os.fsdecode(b"caf\xe9.txt")).endswith(".txt")
    long = os.fsdecode(b"\xe9" * 200 + b"\xc3\xa9" * 27 + b".pdf")  # 258 bytes made safe
    assert size(safe_name(long)) <= NAME_MAX and safe_name(long).endswith(".pdf")


def test_every_part_of_a_sub_path_is_made_safe() -> None:
    sub = PurePosixPath(os.fsdecode(b"partner-a/d\xe9/f\x01.txt"))
    made = safe_sub_path(sub)
    assert made.parts[0] == "partner-a" and made.parts[1] == safe_name(sub.parts[1])
    assert len(made.parts) == 3


@pytest.mark.parametrize("length", [200, 242, 243, 250, 255])
def test_a_verdict_record_name_always_fits_and_is_told_apart(length: int) -> None:
    name = "e" * (length - 4) + ".com"
    record = fitting(name, ".verdict.json")
    assert size(record) <= NAME_MAX and record.endswith(".verdict.json")
    if length + len(".verdict.json") <= NAME_MAX:
        assert record == name + ".verdict.json"
    other = "e" * (length - 5) + "f.com"  # the same beginning
    assert fitting(other, ".verdict.json") != record


def test_numbered_names_fit() -> None:
    assert numbered("a.txt", 1) == "a.txt"
    assert numbered("a.txt", 2) == "a (2).txt"
    long = "n" * 251 + ".txt"
    assert size(numbered(long, 12)) <= NAME_MAX and numbered(long, 12).endswith(" (12).txt")
    assert numbered(long, 12) != numbered(long, 13)
