"""ssftp.transfer.state: system/transfers.sqlite's failures as the code above it sees them, and
remote names that are not UTF-8 kept apart from text ones."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path, PurePosixPath

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ssftp.errors import TransferStateError
from ssftp.file_stamp import FileStamp
from ssftp.metrics import TransferTotals
from ssftp.transfer.state import (
    STATE_FILE,
    Delivery,
    RemoteStamp,
    Stage,
    TransferState,
    stored_totals,
)
from tests.support.logs import app_log_records


def test_the_transfer_state_keeps_remote_names_that_are_not_utf8_apart_from_text_ones(
        tmp_path: Path):
    """SQLite text cannot hold a surrogate (UnicodeEncodeError on 5b67aed). Such a name is kept
    as its bytes, and a text name that spells the same escape is another row."""
    latin = os.fsdecode(b"in/caf\xe9.txt")
    with TransferState.open(tmp_path) as state:
        state.record_fetched("dl", latin, RemoteStamp(3, 7))
        assert state.fetched("dl", latin) == RemoteStamp(3, 7)
        assert state.fetched("dl", "in/caf\\xe9.txt") is None
        state.forget_fetched("dl", latin)
        assert state.fetched("dl", latin) is None
        delivery = Delivery("up", PurePosixPath(latin), FileStamp(1, 3, 7), latin + ".tmp",
                            latin, Stage.SENDING)
        state.save_delivery(delivery)
        assert state.deliveries("up") == [delivery]


def test_a_damaged_state_file_is_an_error_of_ours_naming_it(tmp_path):
    (tmp_path / STATE_FILE).write_bytes(b"not a database, " * 512)
    with pytest.raises(TransferStateError) as caught:
        TransferState.open(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / STATE_FILE) in message and "\n" not in message


def test_a_scrape_leaves_out_the_totals_it_cannot_read_not_the_rest(tmp_path):
    """On main a damaged file raised sqlite3.DatabaseError out of the collector, and the
    scrape failed whole."""
    (tmp_path / STATE_FILE).write_bytes(b"not a database, " * 512)
    registry = CollectorRegistry()
    totals = TransferTotals(registry)
    totals.inc("upload", "ok")
    totals.read_from(partial(stored_totals, tmp_path))
    with app_log_records() as seen:
        text = generate_latest(registry).decode()
    assert 'ssftp_transfers_total{direction="upload",result="ok"} 1.0' in text
    [line] = [r for r in seen if r.getMessage() == "scheduled transfer totals not read"]
    assert STATE_FILE in line.fields["error"]  # type: ignore[attr-defined]
