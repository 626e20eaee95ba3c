"""The ssftp image's HEALTHCHECK: what "healthy" means depends on what the container runs.

The command is read from PID 1's command line (tini, then the command), so one image serves
every role without a per-service healthcheck in compose.yaml:

- ``ssftp serve``, ``worker`` or ``up`` with ``--metrics-listen HOST:PORT`` (as
  docker/compose.yaml runs them): their ``/healthz`` answers 200 (every part the process runs
  is up: the SFTP listener; clamd and the Prefect API for a worker);
- without it, ``serve`` / ``up``: the SFTP port answers with an SSH banner, and ``worker``: the
  Prefect API it needs answers (``PREFECT_API_URL``);
- ``prefect server start``: its API answers ``/health``.

Exit 0 healthy, 1 not (Docker's convention), with one line saying why.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import httpx

from ssftp.addresses import parse_listen

DEFAULT_SFTP_PORT = 2002
DEFAULT_PREFECT_PORT = 4200
# /healthz bounds each of its checks to 2 s (a worker has two); the HEALTHCHECK allows 10 s.
TIMEOUT_SECONDS = 8.0


def option(argv: list[str], name: str, default: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``argv``."""
    for at, word in enumerate(argv):
        if word == name and at + 1 < len(argv):
            return argv[at + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return default


def ssh_banner(port: int) -> str | None:
    """Why 127.0.0.1:``port`` is not an SSH server, or None when it answers like one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS) as conn:
            banner = conn.recv(256)
    except OSError as exc:
        return f"SFTP port {port}: {exc}"
    return None if banner.startswith(b"SSH-") else f"SFTP port {port}: no SSH banner"


def http_ok(url: str) -> str | None:
    """Why ``url`` does not answer 2xx, or None when it does (with /healthz's body)."""
    try:
        response = httpx.get(url, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return f"{url}: {exc}"
    return None if response.is_success else f"{url}: {response.status_code} {response.text}"


def api_health(api_url: str) -> str | None:
    """Why the Prefect API at ``api_url`` is not healthy, or None when it is."""
    return http_ok(f"{api_url.rstrip('/')}/health")


def healthz_url(listen: str) -> str:
    """``http://127.0.0.1:9464/healthz`` for ``--metrics-listen 0.0.0.0:9464`` (read as the
    listener reads it, ssftp.runtime.listener.parse_listen)."""
    host, port = parse_listen(listen)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


def problem(argv: list[str]) -> str | None:
    """What is wrong with the container running ``argv``, or None."""
    ssftp = "serve" in argv or "up" in argv or "worker" in argv
    if ssftp and (listen := option(argv, "--metrics-listen", "")):
        return http_ok(healthz_url(listen))
    if "serve" in argv or "up" in argv:
        return ssh_banner(int(option(argv, "--port", str(DEFAULT_SFTP_PORT))))
    if "worker" in argv:
        return api_health(os.environ.get("PREFECT_API_URL", ""))
    if "server" in argv:
        port = option(argv, "--port", str(DEFAULT_PREFECT_PORT))
        return api_health(f"http://127.0.0.1:{port}/api")
    return None


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    if (why := problem(argv)) is not None:
        print(why)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
