"""docker/healthcheck.py, the image's HEALTHCHECK, as plain functions: what "healthy" means for
each command the container runs. The image itself is built and run in tests/e2e/test_docker.py."""

from __future__ import annotations

import importlib.util
import socket
import threading
from types import ModuleType

import pytest

from ssftp.runtime.listener import MetricsListener
from tests.support.repo import REPO

HEALTHCHECK = REPO / "docker" / "healthcheck.py"


# --- docker/healthcheck.py, the image's HEALTHCHECK, as plain functions ---------------------------


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_healthcheck()


@pytest.mark.parametrize(("listen", "url"), [
    ("0.0.0.0:9464", "http://127.0.0.1:9464/healthz"),
    ("[::]:9464", "http://127.0.0.1:9464/healthz"),
    ("[::1]:9000", "http://[::1]:9000/healthz"),
    ("10.0.0.5:9464", "http://10.0.0.5:9464/healthz"),
])
def test_healthcheck_asks_healthz_where_metrics_listen_points(listen, url):
    assert healthcheck.healthz_url(listen) == url


def test_healthcheck_reads_both_option_spellings():
    argv = ["tini", "--", "ssftp", "serve", "--port=2222", "--metrics-listen", "0.0.0.0:1"]
    assert healthcheck.option(argv, "--port", "2002") == "2222"
    assert healthcheck.option(argv, "--metrics-listen", "") == "0.0.0.0:1"
    assert healthcheck.option(argv, "--host", "x") == "x"


def test_healthcheck_of_a_worker_is_its_healthz_naming_what_is_down():
    well = MetricsListener(("127.0.0.1", 0), {"clamd": lambda: "up", "prefect": lambda: "up"})
    ill = MetricsListener(("127.0.0.1", 0), {"clamd": lambda: "down", "prefect": lambda: "up"})
    try:
        argv = ["tini", "--", "ssftp", "worker", "--metrics-listen"]
        assert healthcheck.problem([*argv, f"0.0.0.0:{well.port}"]) is None
        why = healthcheck.problem([*argv, f"127.0.0.1:{ill.port}"])
        assert why is not None and "503" in why and "clamd" in why, why
    finally:
        well.stop()
        ill.stop()


def test_healthcheck_of_serve_without_healthz_is_the_ssh_banner():
    with socket.create_server(("127.0.0.1", 0)) as ssh, socket.create_server(
            ("127.0.0.1", 0)) as silent:
        def greet() -> None:
            conn, _ = ssh.accept()
            with conn:
                conn.sendall(b"SSH-2.0-test\r\n")

        threading.Thread(target=greet, daemon=True).start()
        port, other = ssh.getsockname()[1], silent.getsockname()[1]
        assert healthcheck.problem(["tini", "--", "ssftp", "serve", "--port", str(port)]) is None
        silent.close()  # nothing listens there any more
        why = healthcheck.problem(["tini", "--", "ssftp", "serve", "--port", str(other)])
        assert why is not None and f"SFTP port {other}" in why, why
