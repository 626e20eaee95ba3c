"""One small real run of ``python -m bench``: it starts everything the full run does (ssftp
serve, OpenSSH sshd, sshfs mounts of both, clamd, ssftp up with its Prefect server) with tiny
workloads, and checks that every workload produced figures for both sides and that the table
and the JSON agree; it asserts nothing about speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.sshfs import sshfs_missing
from bench.workloads import FLOOR
from testkit.openssh_server import sshd_available
from tests.support.repo import REPO


@pytest.mark.timeout(600)
def test_smoke_run_of_the_harness(tmp_path):
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(results),
         "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = json.loads(results.read_text())
    rows = {row["name"]: row for row in document["rows"]}
    sftp = ["upload 1x4 MiB", "download 1x4 MiB", "CPU seconds per GiB, upload",
            "CPU seconds per GiB, download", "asyncssh get 1x4 MiB (defaults)",
            "upload 1x1 MiB, 40 ms each way", "upload 20x4 KiB, one session",
            f"upload 20x4 KiB, one session: {FLOOR}, not ssftp",
            "download 20x4 KiB, one session",
            f"download 20x4 KiB, one session: {FLOOR}, not ssftp",
            "download 3x1 MiB concurrently",
            "logins, 5 in a row", "memory, 5 idle sessions (RSS)",
            "memory, 5 idle sessions (PSS)", "upload 1x4 MiB, machine loaded",
            "download 1x4 MiB, machine loaded", "upload 20x4 KiB, one session, machine loaded"]
    # Where sshfs cannot mount, the run says so and goes on without these rows.
    sshfs = [] if sshfs_missing() else [
        "sshfs cat 1x1 MiB", "sshfs cp 1x1 MiB into the mount", "sshfs ls -l of 20 files"]
    pipeline = ["first upload after the start, close -> clean/",
                "pipeline 20x4 KiB: upload end -> all in clean/",
                "pipeline 20x4 KiB: upload start -> all in clean/",
                "latency, upload close -> clean/ (median of 3)",
                *(f"soak, 2 clients, 4 files/s offered for 2 s: {what}"
                  for what in ("files/s uploaded", "close -> clean/, p99",
                               "close -> clean/, p50")),
                "latency during a rescan of 20 files, upload close -> clean/ (median of 3)",
                "rescan of 20x4 KiB beside the uploads"]
    expected = sftp + sshfs + pipeline
    assert list(rows) == expected
    # One rescan (its pace), one first upload per start, one soak; a round for the others.
    samples = {"latency": 3, "rescan": 1, "first": 1, "soak": 1}
    for name, row in rows.items():
        assert row["median"] is not None and row["median"] >= 0, name
        assert len(row["samples"]) == samples.get(name.split()[0].rstrip(","), 2), name
    for name in sftp + sshfs:
        reference = rows[name]["reference"]
        if sshd_available():
            assert reference["name"] == "OpenSSH" and len(reference["samples"]) == 2, name
            # A 4 MiB transfer may cost either server less than a clock tick of CPU: no ratio.
            if not name.startswith("CPU"):
                assert rows[name]["ratio"] > 0, name
    assert rows[pipeline[1]]["reference"]["name"] == "raw clamd CONTSCAN"
    assert document["context"]["workdir_filesystem"]
    # The table on stdout has a line per row, and the run directory was removed.
    assert all(name in proc.stdout for name in expected)
    assert not list(tmp_path.glob("ssftp-bench-*"))
