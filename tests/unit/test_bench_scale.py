"""bench.scale's plain parts: the config of the processes it starts (its HAProxy config is
testkit.haproxy's, which workers are live ssftp.scan.workers', each tested there). ``python -m
bench --only scale`` runs the rest (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from bench.servers import bench_config
from ssftp.config.loader import parse_config

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEiT9cxN5jFzOhSXEg3yw1AfVbkzIRPFc2ZcoZ8Z3nRd bench"


def test_the_configs_of_the_scale_runs_are_valid_and_say_what_they_ask():
    proxied = parse_config(bench_config(KEY, trusted_proxy="127.0.0.2")).config
    assert proxied.limits.proxy_protocol is True
    assert [str(proxy) for proxy in proxied.limits.trusted_proxies] == ["127.0.0.2"]
    on_postgres = parse_config(bench_config(KEY, Path("/run/clamd.sock"),
                                            concurrent_runs=4)).config
    assert on_postgres.scanning.concurrent_runs == 4
    default = parse_config(bench_config(KEY)).config
    assert default.limits.proxy_protocol is False
    assert default.scanning.concurrent_runs == "auto"
