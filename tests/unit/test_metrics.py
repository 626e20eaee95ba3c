"""ssftp.metrics: each metric moved where its fact is known, without a server.

The metrics are one set per process, so the tests compare values before and after rather than
expect absolute figures."""

from __future__ import annotations

import time
from functools import partial

from prometheus_client import CollectorRegistry

from server.defender import Defender
from ssftp.addresses import ClamdAddress
from ssftp.config.schema import ScanningSettings
from ssftp.file_stamp import FileStamp
from ssftp.metrics import SignatureFigures, TransferTotals, worker_started
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.queue import Lane, StagingQueue
from ssftp.transfer.state import STATE_FILE, TransferState, stored_totals
from tests.support.metrics import sample
from tests.support.scanning import make_scanner, stage


def test_scheduled_transfers_are_the_data_roots_totals_and_the_servers_are_added(tmp_path):
    """The downloaders' and uploaders' runs are processes of their own: they count their
    files in system/transfers.sqlite, and the process that serves them exports the sum."""
    registry = CollectorRegistry()
    totals = TransferTotals(registry)
    system = tmp_path / "system"
    system.mkdir()
    totals.read_from(partial(stored_totals, system))
    assert registry.get_sample_value("ssftp_transfers_total", {"direction": "pull",
                                                               "result": "ok"}) is None
    assert not (system / STATE_FILE).exists()  # a scrape creates nothing
    with TransferState.open(system) as run_one, TransferState.open(system) as run_two:
        run_one.add_to_totals("pull", ["ok", "ok", "failed"])
        run_two.add_to_totals("pull", ["ok"])
        run_two.add_to_totals("push", [])
    totals.inc("upload", "ok")

    def value(direction: str, result: str) -> float | None:
        return registry.get_sample_value("ssftp_transfers_total",
                                         {"direction": direction, "result": result})

    assert (value("pull", "ok"), value("pull", "failed"), value("upload", "ok")) == (3, 1, 1)
    assert value("push", "ok") is None


async def test_a_ban_is_counted_once():
    defender = Defender(max_failures=2)  # on the event loop, as in the server: it writes there
    bans = sample("ssftp_defender_bans_total")
    assert not defender.record_failure("192.0.2.1")
    assert defender.record_failure("192.0.2.1")
    assert sample("ssftp_defender_bans_total") == bans + 1
    await defender.close()


def test_a_scan_that_could_not_reach_clamd_is_an_error_and_not_timed(layout, owners, tmp_path):
    scanner = make_scanner(layout, ClamdClient(ClamdAddress(unix_path=str(tmp_path / "no"))),
                           owners)
    errors, timed = sample("ssftp_scans_total", verdict="error"), sample("ssftp_scan_seconds_count")
    assert scanner.scan(stage(layout, "partner-a/later.txt", b"later\n")) is not None
    assert sample("ssftp_scans_total", verdict="error") == errors + 1
    assert sample("ssftp_scan_seconds_count") == timed  # still in staging: no verdict yet


def test_staging_files_counts_what_the_queue_holds(tmp_path):
    settings = ScanningSettings.model_validate({"stableSeconds": 1, "batchWindowSeconds": 0})
    queue = StagingQueue(tmp_path, lambda: settings, clock=lambda: 0.0,
                         stamp_of=lambda path: FileStamp(1, 1, 1))
    assert queue.waiting_files() == 0
    queue.saw(tmp_path / "a")
    queue.take_over([tmp_path / "b"])
    assert queue.waiting_files() == 2
    assert sample("ssftp_staging_files") == 2  # the gauge asks the newest queue
    queue.collect()
    batch = queue.take_batch(Lane.SMALL)
    assert batch == [tmp_path / "b"]
    assert queue.waiting_files() == 1  # the batch is the run's now
    queue.run_failed(batch)
    assert queue.waiting_files() == 2  # waiting for its retry


def test_the_signatures_last_seen_are_one_series_and_their_age_grows_from_the_build():
    figures = SignatureFigures(registry := CollectorRegistry())
    assert list(registry.collect()) == []  # nothing asked yet: nothing exported
    built = time.time() - 3600
    figures.loaded("ClamAV 1.4.6", "27480", 27480, built)
    figures.loaded("ClamAV 1.4.6", "27481+0a1b", 27481, built)
    assert registry.get_sample_value("ssftp_signatures_version",
                                     {"engine": "ClamAV 1.4.6", "database": "27481+0a1b"}) == 27481
    assert registry.get_sample_value("ssftp_signatures_version",
                                     {"engine": "ClamAV 1.4.6", "database": "27480"}) is None
    assert registry.get_sample_value("ssftp_signatures_age_seconds") >= 3600
    figures.loaded("ClamAV 1.4.6", "+0a1b", None, None)  # offline: no official database
    assert registry.get_sample_value("ssftp_signatures_age_seconds") is None


def test_a_worker_exports_its_name_once_it_starts():
    worker_started("scanner-a")
    assert sample("ssftp_worker_info", name="scanner-a") == 1
    worker_started("scanner-b")  # a second worker in this process (tests): the latest name
    assert sample("ssftp_worker_info", name="scanner-b") == 1
    assert sample("ssftp_worker_info", name="scanner-a") == 0
