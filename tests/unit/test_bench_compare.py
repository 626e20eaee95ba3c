"""bench.compare: which rows of two runs are compared, the ratio's direction, the table and the
JSON of ``--compare``, and the arguments REF's run gets. No servers: the runs are JSON here."""

from __future__ import annotations

import pytest

from bench.compare import arguments_for_ref, compare, comparison_json, render_comparison
from bench.results import Better, Row, Samples


def _row(name: str, better: Better, unit: str, *values: float) -> dict[str, object]:
    return Row(name, better, Samples(unit, list(values))).as_json()


def test_only_rows_both_runs_have_are_compared_in_this_runs_order():
    this = [_row("upload", Better.HIGHER, "MB/s", 300.0), _row("new", Better.HIGHER, "MB/s", 1.0),
            _row("memory", Better.LOWER, "MB", 50.0)]
    ref = [_row("memory", Better.LOWER, "MB", 100.0), _row("gone", Better.LOWER, "s", 1.0),
           _row("upload", Better.HIGHER, "MB/s", 200.0)]
    assert [row.this.name for row in compare(this, ref)] == ["upload", "memory"]


def test_ratio_is_this_checkouts_advantage_whichever_way_a_figure_improves():
    faster, smaller = compare(
        [_row("upload", Better.HIGHER, "MB/s", 290.0, 300.0, 310.0),
         _row("cpu", Better.LOWER, "s", 2.0)],
        [_row("upload", Better.HIGHER, "MB/s", 200.0), _row("cpu", Better.LOWER, "s", 3.0)])
    assert faster.ratio == pytest.approx(1.5)
    assert smaller.ratio == pytest.approx(1.5)


def test_no_ratio_without_two_medians_or_against_zero():
    missing = {**_row("upload", Better.HIGHER, "MB/s", 1.0), "median": None}
    (one,) = compare([missing], [_row("upload", Better.HIGHER, "MB/s", 1.0)])
    (zero,) = compare([_row("cpu", Better.LOWER, "s", 0.0)],
                      [_row("cpu", Better.LOWER, "s", 1.0)])
    assert one.ratio is None and zero.ratio is None
    assert render_comparison([one], "main").splitlines()[-1].split() == [
        "upload", "-", "1", "MB/s", "-"]


def test_table_and_json_name_the_ref_and_give_both_medians():
    compared = compare([_row("download 1x256 MiB", Better.HIGHER, "MB/s", 90.0)],
                       [_row("download 1x256 MiB", Better.HIGHER, "MB/s", 100.0)])
    table = render_comparison(compared, "main").splitlines()
    assert table[0].split() == ["workload", "this", "checkout", "median", "main", "median",
                                "ratio"]
    assert table[-1].split() == ["download", "1x256", "MiB", "90.0", "MB/s", "100", "MB/s",
                                 "0.90x"]
    document = comparison_json("main", {"context": {"commit": "abc1234"}, "rows": []}, compared)
    assert document == {"ref": "main", "ref_context": {"commit": "abc1234"}, "rows": [
        {"name": "download 1x256 MiB", "better": "higher", "unit": "MB/s", "this": 90.0,
         "ref_unit": "MB/s", "ref": 100.0, "ratio": pytest.approx(0.9)}]}


def test_refs_run_gets_every_argument_but_this_runs_own():
    argv = ["--only", "sftp", "--compare", "main", "--rounds", "1", "--json", "a.json",
            "--json=b.json", "--compare=HEAD~1", "--smoke"]
    assert arguments_for_ref(argv) == ["--only", "sftp", "--rounds", "1", "--smoke"]
