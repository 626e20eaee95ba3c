"""bench.cpu: where a workload's CPU went and what that says bound it. The tree CPU of the
benchmarks' servers is checked by tests/e2e/test_bench.py's real run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.cpu import (
    BENCH,
    BENCH_CHILDREN,
    OTHERS,
    CpuSplit,
    bound,
    median_cores,
    tree_cpu_seconds,
)

# A child that, once told, spends half a second of CPU, then idles until it is killed.
BURN = ("import sys, time\nsys.stdin.readline()\nstart = time.process_time()\n"
        "while time.process_time() - start < 0.5: pass\ntime.sleep(60)\n")


def test_a_process_inside_another_part_s_tree_is_counted_in_the_innermost_part_only():
    """This process's tree holds the child; the child's CPU goes to its own part, not twice."""
    with subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE) as child:
        try:
            split = CpuSplit({"outer": [os.getpid()], "inner": [child.pid]})
            before = split.read()
            started = tree_cpu_seconds(child.pid)
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
            deadline = time.monotonic() + 120
            while tree_cpu_seconds(child.pid) < started + 0.45:
                assert time.monotonic() < deadline, "the child did not burn its CPU"
                time.sleep(0.05)
            after = split.read()
        finally:
            child.kill()
    inner = after.parts["inner"] - before.parts["inner"]
    outer = after.parts["outer"] - before.parts["outer"]
    assert inner >= 0.45
    assert outer < inner  # only this process's own waiting, not the child's CPU again
    assert set(after.parts) == {"outer", "inner", BENCH, BENCH_CHILDREN}
    assert after.machine >= before.machine + inner - 0.02


def test_cores_since_puts_the_rest_of_the_machine_in_others():
    split = CpuSplit({})
    cores = split.cores_since(split.read())
    assert set(cores) == {BENCH, BENCH_CHILDREN, OTHERS}
    assert all(value >= 0 for value in cores.values())


@pytest.mark.parametrize(("cores", "expected"), [
    ({"clamd": 1.2, "ssftp up": 0.6, OTHERS: 0.1}, "all 2 cores (1.90 busy); most: clamd 1.20"),
    ({"ssftp serve 1": 0.95, "clients": 0.5}, "one core: ssftp serve 1 0.95"),
    # Many processes together are no one process's core.
    ({OTHERS: 0.9, BENCH_CHILDREN: 0.3, "ssftp up": 0.2},
     "not CPU (1.40 of 2 cores busy): waits"),
    ({"Prefect server": 0.3, "ssftp up": 0.2}, "not CPU (0.50 of 2 cores busy): waits"),
])
def test_bound_names_what_held_the_workload_back(cores: dict[str, float], expected: str):
    assert bound(cores, 2) == expected


def test_median_cores_counts_a_part_absent_from_a_round_as_idle_there():
    assert median_cores([{"a": 1.0, "b": 0.4}, {"a": 0.5}, {"a": 0.7, "b": 0.2}]) == {
        "a": 0.7, "b": 0.2}
    assert median_cores([]) == {}
