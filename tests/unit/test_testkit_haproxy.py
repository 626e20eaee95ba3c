"""testkit.haproxy's config: what the scale benchmark and the end-to-end test of several
servers put in front of them (the e2e test runs it)."""

from __future__ import annotations

from testkit.haproxy import haproxy_config


def test_each_frontend_spreads_over_its_own_servers_with_proxy_headers():
    text = haproxy_config({7001: [8001], 7002: [8001, 8002]}, "127.0.0.2")
    sections = text.split("\nfrontend ")[1:]
    assert [section.splitlines()[0] for section in sections] == ["f7001", "f7002"]
    assert "bind 127.0.0.1:7001" in sections[0]
    assert sections[0].count("    server ") == 1 and sections[1].count("    server ") == 2
    assert "    server s2 127.0.0.1:8002 send-proxy-v2 source 127.0.0.2\n" in sections[1]
    assert "balance leastconn" in sections[1] and "mode tcp" in text


def test_the_balance_is_the_one_asked_for():
    assert "    balance roundrobin\n" in haproxy_config({7001: [8001, 8002]},
                                                       balance="roundrobin")
