"""The benchmark harness: its arithmetic, and one small real run of ``python -m bench``.

The smoke run starts everything the full run does (ssftp serve, OpenSSH sshd, clamd, ssftp up
with its Prefect server) with tiny workloads. It checks that every workload produced figures
for both sides and that the table and the JSON agree; it asserts nothing about speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.memory import tree_memory
from bench.results import Better, Row, Samples, Target, render_table
from testkit.openssh_server import sshd_available
from testkit.processes import process_tree

REPO = Path(__file__).resolve().parents[1]


def test_ratio_is_ssftps_advantage_whichever_way_a_figure_improves():
    faster = Row("upload", Better.HIGHER, Samples("MB/s", [300.0]), "OpenSSH",
                 Samples("MB/s", [200.0]))
    smaller = Row("memory", Better.LOWER, Samples("MB", [50.0]), "OpenSSH",
                  Samples("MB", [200.0]))
    assert faster.ratio == pytest.approx(1.5)
    assert smaller.ratio == pytest.approx(4.0)


def test_median_and_spread_of_samples():
    samples = Samples("s", [3.0, 1.0, 2.0, 10.0])
    assert samples.median == 2.5
    assert samples.spread == (1.0, 10.0)
    with pytest.raises(ValueError, match="no samples"):
        _ = Samples("s").median


def test_targets_judge_the_medians():
    row = Row("logins", Better.HIGHER, Samples("logins/s", [49.0, 51.0, 60.0]), "OpenSSH",
              Samples("logins/s", [10.0, 11.0, 9.0]), Target.ratio_at_least(5.0))
    assert row.met is True
    row.figure = Samples("logins/s", [40.0])
    assert row.met is False
    pipeline = Row("pipeline", Better.LOWER, Samples("s", [2.5]), "raw clamd",
                   Samples("s", [0.3]), Target.at_most_reference_times(2.0, 2.0, "s"))
    assert pipeline.met is True
    pipeline.figure = Samples("s", [2.7])
    assert pipeline.met is False
    latency = Row("latency", Better.LOWER, Samples("s", [1.6, 1.4, 1.45]),
                  target=Target.at_most(1.5, "s"))
    assert latency.met is True and latency.ratio is None


def test_table_shows_a_missed_target_plainly():
    row = Row("download", Better.HIGHER, Samples("MB/s", [90.0]), "OpenSSH",
              Samples("MB/s", [100.0]), Target.ratio_at_least(1.0))
    table = render_table([row])
    assert "0.90x" in table
    assert table.splitlines()[-1].endswith("NO")


def test_memory_of_a_process_tree_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        memory = tree_memory(os.getpid())
        assert memory.processes >= 2
        assert memory.rss_bytes > memory.pss_bytes > 0
    finally:
        child.kill()
        child.wait()


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
    expected = ["upload 1x4 MiB", "download 1x4 MiB", "upload 1x1 MiB, 40 ms each way",
                "upload 20x4 KiB, one session",
                "logins, 5 in a row", "memory, 5 idle sessions (RSS)",
                "memory, 5 idle sessions (PSS)", "pipeline 20x4 KiB: upload end -> all in clean/",
                "pipeline 20x4 KiB: upload start -> all in clean/",
                "latency, upload close -> clean/ (median of 3)"]
    assert list(rows) == expected
    for name, row in rows.items():
        assert row["median"] is not None and row["median"] >= 0, name
        assert len(row["samples"]) == (3 if name.startswith("latency") else 2), name
    for name in expected[:7]:
        reference = rows[name]["reference"]
        if sshd_available():
            assert reference["name"] == "OpenSSH" and len(reference["samples"]) == 2, name
            assert rows[name]["ratio"] > 0, name
    assert rows[expected[7]]["reference"]["name"] == "raw clamd CONTSCAN"
    assert document["context"]["workdir_filesystem"]
    # The table on stdout has a line per row, and the run directory was removed.
    assert all(name in proc.stdout for name in expected)
    assert not list(tmp_path.glob("ssftp-bench-*"))
