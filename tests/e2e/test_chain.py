"""Two ssftp instances chained on one machine, each a real ``ssftp up`` process.

A partner uploads to instance A with OpenSSH ``sftp``; A scans; A's uploader (a deployment
served by A, on an interval schedule) sends the clean file to B's staging account; B scans it
again; a consumer downloads it from B. EICAR uploaded to A stays in A's quarantine and never
reaches B. Both instances report to one Prefect server, the one B's ``up`` starts (the test
harness runs no scheduler, and schedules are what this tests), where the runs are checked: A
is told to use it (``PREFECT_API_URL``), as ``up`` adopts no server on its own.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flows.events import UPLOADED
from ssftp.notify.owed import CLEAN
from testkit.files import EICAR, EICAR_MARKER
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.cli import child_env
from tests.support.config import write_config
from tests.support.logs import json_lines
from tests.support.up import Up, launch_up, shut_down, wait_until_up
from tests.support.waiting import wait_for

PARTNER, PARTNER_PW = "partner-chain", "partner-chain-pw"
HOP, HOP_PW = "from-a", "hop-a-to-b-pw"
CONSUMER, CONSUMER_PW = "consumer-chain", "consumer-chain-pw"
REPORT = b"quarterly figures, hop by hop\n" * 1000


@dataclass
class Chain:
    a: Up
    b: Up
    partner_dir: Path
    a_metrics: str  # A's /metrics


def config_b() -> str:
    return f"""
    sftpPort: 0
    instanceName: chain-b
    fsyncUploads: false
    scanning:
      cleanFileEvents: true  # a clean file's way through the chain is followed in events
    users:
      stagingDir:
        - directory: inbound
          auth: {{username: {HOP}, password: {HOP_PW}}}
      cleanDir:
        - directory: inbound
          auth: {{username: {CONSUMER}, password: {CONSUMER_PW}}}
    """


def config_a(b_port: int, metrics_port: int) -> str:
    return f"""
    sftpPort: 0
    instanceName: chain-a
    fsyncUploads: false
    scanning:
      cleanFileEvents: true
    enableSftpClientUploader: true
    metrics:
      listen: "127.0.0.1:{metrics_port}"
    users:
      stagingDir:
        - directory: partner
          auth: {{username: {PARTNER}, password: {PARTNER_PW}}}
    sftpClientUploaders:
      - name: to-b
        host: 127.0.0.1
        port: {b_port}
        username: {HOP}
        password: {HOP_PW}
        localDirectoryToUpload: partner
        remoteDirectory: null
        overrideRemoteExistingFile: false
        interval: 2
    """


def trust(b: Up, a_data: Path) -> None:
    """A trusts B's host keys through A's ``system/known_hosts``, as an operator would set it."""
    lines = []
    for path in sorted((b.data / "system").glob("ssh_host_*_key")):
        public = asyncssh.read_private_key(path).export_public_key().decode().strip()
        lines.append(f"[127.0.0.1]:{b.sftp_port} {public}")
    (a_data / "system").mkdir(parents=True, exist_ok=True)
    (a_data / "system" / "known_hosts").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    b_port, prefect_port = free_port(), free_port()
    b = launch_up(root, write_config(root / "b.yaml", config_b()), root / "b-data", b_port,
                  prefect_port)
    a = None
    try:
        wait_until_up(b)
        trust(b, root / "a-data")
        metrics_port = free_port()
        a = launch_up(root, write_config(root / "a.yaml", config_a(b_port, metrics_port)),
                      root / "a-data", free_port(), free_port(),
                      env=child_env(PREFECT_API_URL=b.api))
        wait_until_up(a)
        assert f"http://127.0.0.1:{prefect_port} (not ours: PREFECT_API_URL)" in a.stdout
        partner_dir = root / "partner"
        partner_dir.mkdir()
        (partner_dir / "report.csv").write_bytes(REPORT)
        (partner_dir / "eicar.com").write_bytes(EICAR)
        result = run_sftp(a.sftp_port, PARTNER, ["put report.csv", "put eicar.com"],
                          cwd=partner_dir, password=PARTNER_PW)
        assert result.returncode == 0, result.stderr
        yield Chain(a, b, partner_dir, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        if a is not None:
            shut_down(a)
        shut_down(b)


def files_in(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def test_a_clean_file_travels_the_chain_and_the_consumer_downloads_it(chain, tmp_path):
    b_clean = chain.b.data / "clean" / "inbound" / "report.csv"
    wait_for("report.csv in B's clean/", b_clean.is_file, timeout=180)

    assert b_clean.read_bytes() == REPORT
    # A delivered it and archived it under the same sub path.
    assert (chain.a.data / "uploadarchive" / "partner" / "report.csv").read_bytes() == REPORT
    assert not (chain.a.data / "clean" / "partner" / "report.csv").exists()
    # The consumer on B gets exactly what the partner sent to A.
    result = run_sftp(chain.b.sftp_port, CONSUMER, ["get report.csv"], cwd=tmp_path,
                      password=CONSUMER_PW)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.csv").read_bytes() == REPORT


def test_eicar_never_leaves_a(chain):
    quarantined = chain.a.data / "quarantine" / "partner" / "eicar.com"
    wait_for("eicar.com in A's quarantine/", quarantined.is_file, timeout=180)
    # Wait for the clean file to arrive at B, so the uploader has certainly run since.
    wait_for("report.csv on B", (chain.b.data / "clean" / "inbound" / "report.csv").is_file,
             timeout=180)

    for area in ("clean", "uploadarchive"):
        assert not (chain.a.data / area / "partner" / "eicar.com").exists()
    for path in files_in(chain.b.data):
        if path.suffix in (".com", ".csv", ".json") or "inbound" in path.parts:
            assert EICAR_MARKER not in path.read_bytes(), path


def audit(up: Up, event: str) -> list[dict]:
    return [record for record in json_lines(up.data / "log" / "audit.log")
            if record.get("event") == event]


def test_each_hop_scanned_and_the_runs_are_in_prefect(chain):
    wait_for("report.csv on B", (chain.b.data / "clean" / "inbound" / "report.csv").is_file,
             timeout=180)
    a_scans = {record["file"].rsplit("/", 1)[-1]: record for record in audit(chain.a, "scan")}
    b_scans = [record for record in audit(chain.b, "scan")
               if record["file"].endswith("report.csv")]
    assert a_scans["report.csv"]["verdict"] == "clean"
    assert a_scans["eicar.com"]["verdict"] == "infected"
    assert [record["verdict"] for record in b_scans] == ["clean"]
    assert b_scans[0]["sha256"] == a_scans["report.csv"]["sha256"]
    assert b_scans[0]["account"] == HOP
    uploads = [record for record in audit(chain.a, "upload") if record["file"].endswith(
        "report.csv")]
    assert len(uploads) == 1  # delivered once, never twice

    # Both records are written while their runs go on (an upload's run still reports, a
    # scan's still publishes its tables): wait for the runs to end.
    def run(flow_run_id: str) -> dict:
        return httpx.get(f"{chain.b.api}/flow_runs/{flow_run_id}", timeout=30).json()

    for run_id in (uploads[0]["flow_run_id"], b_scans[0]["flow_run_id"]):
        wait_for(f"run {run_id} completed",
                 lambda run_id=run_id: run(run_id)["state_type"] == "COMPLETED", timeout=60)
    deployment = httpx.get(f"{chain.b.api}/deployments/name/upload/chain-a", timeout=30).json()
    upload_run = run(uploads[0]["flow_run_id"])
    assert upload_run["name"] == "upload to-b"
    assert upload_run["deployment_id"] == deployment["id"]
    assert [schedule["slug"] for schedule in deployment["schedules"]] == ["to-b"]


def ssftp_status(*args: str) -> subprocess.CompletedProcess[str]:
    ssftp = str(Path(sys.executable).with_name("ssftp"))
    return subprocess.run([ssftp, "status", *args], capture_output=True, text=True, timeout=60)


def test_status_follows_the_file_through_both_instances(chain):
    """``ssftp status`` over A's and B's data dirs, by A's path and by the sha256: the upload
    to A, A's scan, A's upload to B, then B's scan, in time order (on main ``--data-dir`` could
    be given once: the last one won and A's part was missing); and the consumer's download
    from B, when the module's test of it ran before."""
    wait_for("B scanned report.csv", lambda: any(record["file"].endswith("report.csv")
                                                 for record in audit(chain.b, "scan")),
             timeout=180)
    data = ["--data-dir", str(chain.a.data), "--data-dir", str(chain.b.data)]
    for asked in ("partner/report.csv", hashlib.sha256(REPORT).hexdigest()):
        result = ssftp_status(asked, "--json", *data)
        assert result.returncode == 0, result.stderr
        steps = [(record["instance"], record["event"], record.get("verdict"))
                 for record in json.loads(result.stdout) if record["event"] != "webhook"]
        fetched = [("chain-b", "fetch", None)] if ("chain-b", "fetch", None) in steps else []
        assert steps == [("chain-a", "scan", "clean"), ("chain-a", "upload", None),
                         ("chain-b", "scan", "clean"), *fetched], asked


def test_one_event_resource_filter_follows_the_file_through_both_instances(chain):
    """The clean file's sha256 alone finds, in the shared Prefect server's events, A's scan,
    A's upload to B and B's scan, oldest first."""
    wait_for("report.csv on B", (chain.b.data / "clean" / "inbound" / "report.csv").is_file,
             timeout=180)
    resource = "ssftp.file." + hashlib.sha256(REPORT).hexdigest()
    expected = [("chain-a", CLEAN), ("chain-a", UPLOADED), ("chain-b", CLEAN)]
    steps: list[tuple[str, str]] = []

    def all_stored() -> bool:
        response = httpx.post(f"{chain.b.api}/events/filter", timeout=30, json={
            "filter": {"resource": {"id": [resource]}, "order": "ASC"}, "limit": 50})
        response.raise_for_status()
        steps[:] = [(event["resource"]["ssftp.instance"], event["event"])
                    for event in response.json()["events"]]
        return len(steps) >= len(expected)

    wait_for(f"the events of {resource}", all_stored, timeout=60)
    assert steps == expected


def test_a_scrape_counts_the_uploaders_pushes_made_in_their_own_processes(chain):
    """A's uploader runs are subprocesses of A's Prefect runner; A's /metrics has their files
    (on main ssftp_transfers_total had the SFTP server's only: no ``push``)."""
    wait_for("report.csv on B", (chain.b.data / "clean" / "inbound" / "report.csv").is_file,
             timeout=180)
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(
                   httpx.get(chain.a_metrics, timeout=30).text)
               for sample in family.samples}
    pushed = ("ssftp_transfers_total", (("direction", "push"), ("result", "ok")))
    uploaded = ("ssftp_transfers_total", (("direction", "upload"), ("result", "ok")))
    assert samples[pushed] == 1  # report.csv; EICAR never left A
    assert samples[uploaded] == 2  # the partner's two puts
