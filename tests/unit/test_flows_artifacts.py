"""flows.artifacts, as plain functions: artifact keys, and the rows of the quarantine table (the
table published through a real Prefect is in tests/integration/test_flows_scan.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flows import artifacts
from flows.artifacts import artifact_key, quarantine_rows
from ssftp.layout import DataLayout


def test_keys_keep_lowercase_letters_digits_and_dashes():
    assert artifact_key("quarantine", "Gateway_1 (EU)") == "quarantine-gateway-1-eu"
    assert artifact_key("retention", "vm") == "retention-vm"


def _quarantine(layout: DataLayout, name: str, when: str, signature: str) -> None:
    path = layout.quarantine / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    path.with_name(path.name + ".verdict.json").write_text(json.dumps(
        {"time": when, "account": name.split("/")[0], "verdict": "infected",
         "signature": signature, "sha256": "ab" * 32}))


def test_the_newest_files_in_quarantine_come_first_with_their_verdicts(tmp_path: Path):
    layout = DataLayout.at(tmp_path).create()
    _quarantine(layout, "acme/old.exe", "2026-01-01T00:00:00.000+00:00", "Win.Old")
    _quarantine(layout, "beta/new\x1b.exe", "2026-06-01T00:00:00.000+00:00", "Eicar")
    rows, total = quarantine_rows(layout)
    assert total == 2
    assert [row["file"] for row in rows] == ["quarantine/beta/new\\x1b.exe",
                                             "quarantine/acme/old.exe"]  # escaped, newest first
    assert rows[0] == {"time": "2026-06-01T00:00:00.000+00:00", "account": "beta",
                       "file": "quarantine/beta/new\\x1b.exe", "verdict": "infected",
                       "signature": "Eicar", "sha256": "ab" * 32}


def test_a_large_quarantine_is_cut_to_its_newest_rows_and_counted(tmp_path: Path,
                                                                   monkeypatch):
    layout = DataLayout.at(tmp_path).create()
    for index in range(5):
        _quarantine(layout, f"acme/f{index}", f"2026-01-0{index + 1}T00:00:00.000+00:00", "S")
    monkeypatch.setattr(artifacts, "QUARANTINE_ROWS", 2)
    rows, total = quarantine_rows(layout)
    assert total == 5 and [row["file"] for row in rows] == ["quarantine/acme/f4",
                                                            "quarantine/acme/f3"]
    assert not os.listdir(layout.clean)  # only read
