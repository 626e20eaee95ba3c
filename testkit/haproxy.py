"""HAProxy in TCP mode in front of ``ssftp serve`` processes, sending the PROXY protocol v2 as
docs/beyond-one-machine.md shows it: for the scale benchmark and the end-to-end test of several
servers on one data root."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
# HAProxy connects to the servers from this address, the one they trust to send PROXY headers
# (``limits.trustedProxies``); all of 127.0.0.0/8 is loopback on Linux.
PROXY_SOURCE = "127.0.0.2"
READY_TIMEOUT = 120.0


def haproxy_config(frontends: dict[int, list[int]], source: str = PROXY_SOURCE,
                   balance: str = "leastconn") -> str:
    """Each frontend port spreads its connections over its servers' ports (``balance``),
    connecting from ``source`` and sending the PROXY protocol v2."""
    sections = "".join(
        f"\nfrontend f{port}\n    bind 127.0.0.1:{port}\n    default_backend b{port}\n"
        f"backend b{port}\n    balance {balance}\n" + "".join(
            f"    server s{index} 127.0.0.1:{server} send-proxy-v2 source {source}\n"
            for index, server in enumerate(servers, start=1))
        for port, servers in frontends.items())
    return ("global\n    maxconn 256\ndefaults\n    mode tcp\n    timeout connect 10s\n"
            "    timeout client 120s\n    timeout server 120s\n" + sections)


def listening(port: int) -> bool:
    """Whether ``ss`` shows a listener on 127.0.0.1:``port`` (a probe connection would reach
    a server through the balancer)."""
    shown = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                           text=True, check=True).stdout
    return f"127.0.0.1:{port}" in shown


@contextlib.contextmanager
def haproxy(directory: Path, frontends: dict[int, list[int]],
            balance: str = "leastconn") -> Iterator[subprocess.Popen[bytes]]:
    """HAProxy with :func:`haproxy_config` (from :data:`PROXY_SOURCE`), in the foreground,
    until the block ends; its output in ``directory/haproxy.out``."""
    if not Path(HAPROXY).exists():
        raise RuntimeError("haproxy is not installed (scripts/bootstrap.sh installs it)")
    config = directory / "haproxy.cfg"
    config.write_text(haproxy_config(frontends, PROXY_SOURCE, balance))
    with (directory / "haproxy.out").open("wb") as out:
        process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(listening(port) for port in frontends):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not listen on {sorted(frontends)}: see "
                                   f"{directory / 'haproxy.out'}")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
