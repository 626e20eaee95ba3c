"""bench.scale's plain parts: the HAProxy config and the config of the processes it starts
(which workers are live is ssftp.scan.workers', tested there). ``python -m bench --only
scale`` runs the rest (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from bench.scale import haproxy_config
from bench.servers import bench_config
from ssftp.config.loader import parse_config

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEiT9cxN5jFzOhSXEg3yw1AfVbkzIRPFc2ZcoZ8Z3nRd bench"


def test_each_frontend_spreads_over_its_own_servers_with_proxy_headers():
    text = haproxy_config({7001: [8001], 7002: [8001, 8002]}, "127.0.0.2")
    sections = text.split("\nfrontend ")[1:]
    assert [section.splitlines()[0] for section in sections] == ["f7001", "f7002"]
    assert "bind 127.0.0.1:7001" in sections[0]
    assert sections[0].count("    server ") == 1 and sections[1].count("    server ") == 2
    assert "    server s2 127.0.0.1:8002 send-proxy-v2 source 127.0.0.2\n" in sections[1]
    assert "balance leastconn" in sections[1] and "mode tcp" in text


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
