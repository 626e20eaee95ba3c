"""Who scans, end to end: clamd and an ICAP engine together, ICAP alone, and an ICAP outage.

Real sftp uploads, the worker as ``ssftp up`` runs it, real Prefect, and a real c-icap (Debian's,
with its virus_scan service). The c-icap stands for a commercial engine: it scans through a
clamd of its own whose database has one signature more than the pipeline's clamd
(:data:`ONLY_ICAP_KNOWS`), so a file carrying it is one that only the ICAP engine finds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.database import TEST_SIGNATURES
from testkit.files import EICAR
from tests.support.config import PARTNER_PASSWORD
from tests.support.gateway import unique_name
from tests.support.icap import CIcap
from tests.support.pipeline import SCAN_LIMIT, Pipeline, running_pipeline
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver

ONLY_ICAP_KNOWS = b"ssftp-test: a pattern that only the commercial engine knows"
ICAP_SIGNATURE = "Ssftp.Test.OnlyIcapKnows"


@pytest.fixture(scope="module")
def icap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CIcap]:
    """c-icap over a clamd that knows EICAR and :data:`ONLY_ICAP_KNOWS`."""
    root = tmp_path_factory.mktemp("icap-engine")
    database = root / "database"
    shutil.copytree(TEST_SIGNATURES, database)
    (database / "only-icap.ndb").write_text(f"{ICAP_SIGNATURE}:0:*:{ONLY_ICAP_KNOWS.hex()}\n")
    clamd = ClamdDaemon.start(root / "clamd", database=database)
    server = CIcap.start(root / "c-icap", clamd.socket)
    yield server
    server.stop()
    clamd.stop()


def engines_config(clamav: str, icap_url: str | None = None,
                   ) -> Callable[[Path, WebhookReceiver], str]:
    """A pipeline's config: ``clamav`` the YAML of its clamav section's engine line, in which
    ``{socket}`` is the pipeline's own clamd; with ``icap_url``, that ICAP server too."""
    icap = f'icap:\n          servers: ["{icap_url}"]\n          timeout: 30' if icap_url else ""

    def text(clamd_socket: Path, receiver: WebhookReceiver) -> str:
        return f"""
        sftpPort: 0
        fsyncUploads: false
        instanceName: engines-test
        clamav:
          {clamav.format(socket=clamd_socket)}
          maxFileSize: {SCAN_LIMIT}
        {icap}
        scanning:
          stableSeconds: 0.2
          batchWindowSeconds: 0.1
          retryInitialSeconds: 0.5
          retryMaxSeconds: 1
        webhooks:
          - name: virusFound
            url: {receiver.url}/hook
        users:
          stagingDir:
            - directory: partner-a
              auth:
                username: partner-a
                password: {PARTNER_PASSWORD}
        """
    return text


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, prefect_api: str,
         icap: CIcap) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("both-engines"),
                          engines_config("address: {socket}", icap.url)) as stack:
        yield stack


def test_a_file_only_the_icap_engine_knows_is_quarantined(both: Pipeline, workdir: Path):
    known, clean = f"icap-only-{unique_name()}.bin", f"plain-{unique_name()}.txt"
    (workdir / known).write_bytes(b"header\n" + ONLY_ICAP_KNOWS + b"\ntrailer\n")
    (workdir / clean).write_text("nothing to see\n")
    both.upload(workdir, [f"put {known}", f"put {clean}"])

    wait_for("the clean file in clean/", both.clean(clean).exists)
    record = both.kept_out(known)
    assert record["verdict"] == "infected"
    assert ICAP_SIGNATURE in str(record["signature"])
    engines = record["engines"]
    assert isinstance(engines, dict) and engines["clamd"] == "OK"
    assert ICAP_SIGNATURE in engines["icap"]
    (passed,) = both.scans_of(clean)
    assert passed["engines"] == {"clamd": "OK", "icap": "OK"}
    wait_for("the virusFound webhook", lambda: both.receiver.received("/hook", known))


def test_eicar_is_found_by_both(both: Pipeline, workdir: Path):
    name = f"eicar-{unique_name()}.com"
    (workdir / name).write_bytes(EICAR)
    both.upload(workdir, [f"put {name}"])

    engines = both.kept_out(name)["engines"]
    assert isinstance(engines, dict)
    assert "EICAR" in engines["clamd"].upper() and "EICAR" in engines["icap"].upper()


def test_with_the_icap_server_stopped_files_wait_and_are_never_clean(
        both: Pipeline, icap: CIcap, workdir: Path):
    name = f"during-outage-{unique_name()}.txt"
    (workdir / name).write_text("scanned once the ICAP server is back\n")
    icap.stop()
    try:
        both.upload(workdir, [f"put {name}"])
        wait_for("a failed attempt", lambda: both.scans_of(name))
        attempts = both.scans_of(name)
        assert all(record["verdict"] == "error" for record in attempts)
        assert not both.clean(name).exists()
        assert both.staged(name).exists()
    finally:
        icap.restart()
    wait_for("the file in clean/ once ICAP answers", both.clean(name).exists)
    assert both.scans_of(name)[-1]["engines"] == {"clamd": "OK", "icap": "OK"}


def test_icap_alone_scans_when_clamd_is_switched_off(tmp_path_factory: pytest.TempPathFactory,
                                                     prefect_api: str, icap: CIcap,
                                                     workdir: Path):
    with running_pipeline(tmp_path_factory.mktemp("icap-alone"),
                          engines_config("enabled: false", icap.url)) as alone:
        infected, clean = f"eicar-{unique_name()}.com", f"plain-{unique_name()}.txt"
        (workdir / infected).write_bytes(EICAR)
        (workdir / clean).write_text("clean, says ICAP alone\n")
        alone.upload(workdir, [f"put {infected}", f"put {clean}"])

        record = alone.kept_out(infected)
        wait_for("the clean file in clean/", alone.clean(clean).exists)
        assert record["verdict"] == "infected" and "EICAR" in str(record["signature"]).upper()
        (passed,) = alone.scans_of(clean)
        assert passed["verdict"] == "clean"


def test_a_pool_of_two_clamds_scans_on_when_one_is_killed(
        tmp_path_factory: pytest.TempPathFactory, prefect_api: str, workdir: Path):
    """Half the files are uploaded with both clamds up, the other half after one is
    SIGKILLed: every file is scanned by a live clamd, the EICAR ones quarantined, the others
    clean, and none waits for the dead one."""
    root = tmp_path_factory.mktemp("clamd-pool")
    second = ClamdDaemon.start(root / "second-clamd", database=TEST_SIGNATURES)
    try:
        pool = engines_config(f'address: ["{{socket}}", "{second.socket}"]')
        with running_pipeline(root, pool) as pooled:
            batches = [[f"{half}-{n}-{unique_name()}.{'com' if n % 3 == 0 else 'txt'}"
                        for n in range(9)] for half in ("before", "after")]
            for batch in batches:
                for name in batch:
                    (workdir / name).write_bytes(EICAR if name.endswith(".com")
                                                 else b"clean: " + name.encode())
            pooled.upload(workdir, [f"put {name}" for name in batches[0]])
            wait_for("the first half scanned",
                     lambda: all(pooled.scans_of(name) for name in batches[0]))
            pooled.clamd.process.kill()
            pooled.clamd.process.wait()
            pooled.upload(workdir, [f"put {name}" for name in batches[1]])
            for name in batches[0] + batches[1]:
                moved = (pooled.quarantined(name) if name.endswith(".com")
                         else pooled.clean(name))
                wait_for(f"{name} scanned and moved", moved.exists)
            for name in batches[1]:
                # The survivor took every file at once: no failed attempt, no wait.
                assert [r["verdict"] for r in pooled.scans_of(name)] == [
                    "infected" if name.endswith(".com") else "clean"], name
    finally:
        second.stop()
