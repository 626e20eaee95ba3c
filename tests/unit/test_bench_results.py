"""bench.results: the benchmark's arithmetic (ratios, medians and spreads, targets) and its table.
One small real run of ``python -m bench`` is in tests/e2e/test_bench.py."""

from __future__ import annotations

import pytest

from bench.results import Better, Row, Samples, Target, render_table


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


def test_ratio_target_of_a_figure_that_should_be_low():
    row = Row("cpu", Better.LOWER, Samples("s", [3.0]), "OpenSSH", Samples("s", [4.0]),
              Target.ratio_at_least(1.0, Better.LOWER))
    assert row.met is True and row.target is not None and row.target.text == ">= 1x"
    row.figure = Samples("s", [4.5])
    assert row.met is False
