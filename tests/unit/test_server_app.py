"""server.app: the periodic sweep of unfinished uploads logs each one it removes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from server.app import _remove_stale_temp_files as remove_stale_files
from ssftp.layout import (
    DataLayout,
)
from ssftp.logs import APP
from tests.support.logs import app_log_records


def test_the_server_sweep_logs_each_unfinished_upload_it_removes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=APP)
    layout = DataLayout.at(tmp_path).create()
    stale = layout.staging / "partner-a" / ".in.report.csv"
    stale.parent.mkdir()
    stale.write_bytes(b"left by lftp")
    with app_log_records() as records:
        remove_stale_files(layout, partial_ttl=600, now=time.time() + 3600)
    assert not stale.exists()
    assert [(record.getMessage(), record.fields["path"]) for record in records
            if "unfinished" in record.getMessage()] == [
        ("removed unfinished upload", str(stale))]
