"""Prometheus metrics and /healthz with real processes and clients: logins, sessions and
transfers of OpenSSH ``sftp`` counted by the gateway, ``ssftp serve``'s ``--metrics-listen``
flag and its one-line refusals, and a real ``ssftp up`` scraped while a partner uploads a clean
file and EICAR (real clamd, real Prefect, a real webhook receiver).

The metrics are one set per process (ssftp.metrics), so the in-process tests compare values
before and after rather than absolute figures."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.database import TEST_SIGNATURES
from testkit.files import EICAR
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.cli import SSFTP, child_env, ssftp
from tests.support.config import CONSUMER_PASSWORD, PARTNER_PASSWORD, write_config
from tests.support.metrics import sample, scraped
from tests.support.up import STOP_TIMEOUT, Up, shut_down, wait_until_up
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver


def value(samples: dict, name: str, /, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- each metric where its fact is known (in process) -----------------------------------------


def test_logins_and_sessions_move_with_real_logins(gateway, workdir):
    before = {result: sample("ssftp_logins_total", method="password", result=result)
              for result in ("ok", "failed")}
    sessions = sample("ssftp_sessions")
    wrong = run_sftp(gateway.port, "partner-a", ["ls"], cwd=workdir, password="wrong-pw")
    assert wrong.returncode != 0
    right = run_sftp(gateway.port, "partner-a", ["ls"], cwd=workdir, password=PARTNER_PASSWORD)
    assert right.returncode == 0, right.stderr
    # OpenSSH tries the password, then keyboard-interactive with it (asyncssh checks that
    # as a password too): each attempt is a failed login, in the log and here.
    assert sample("ssftp_logins_total", method="password", result="failed") \
        >= before["failed"] + 1
    assert sample("ssftp_logins_total", method="password", result="ok") == before["ok"] + 1
    wait_for("the session to end", lambda: sample("ssftp_sessions") == sessions, timeout=30)


def test_upload_and_download_bytes_and_transfers_move(gateway, workdir):
    data = b"x" * 70_000
    (workdir / "bytes.bin").write_bytes(data)
    published = gateway.layout.clean / "partner-a" / "published.bin"
    published.parent.mkdir(parents=True, exist_ok=True)
    published.write_bytes(data)
    up_bytes, down_bytes = sample("ssftp_upload_bytes_total"), sample("ssftp_download_bytes_total")
    uploads = sample("ssftp_transfers_total", direction="upload", result="ok")
    downloads = sample("ssftp_transfers_total", direction="download", result="ok")
    put = run_sftp(gateway.port, "partner-a", ["put bytes.bin"], cwd=workdir,
                   password=PARTNER_PASSWORD)
    assert put.returncode == 0, put.stderr
    get = run_sftp(gateway.port, "consumer-a", ["get published.bin"], cwd=workdir,
                   password=CONSUMER_PASSWORD)
    assert get.returncode == 0, get.stderr
    wait_for("both transfers counted", lambda: sample(
        "ssftp_transfers_total", direction="download", result="ok") == downloads + 1, timeout=30)
    assert sample("ssftp_transfers_total", direction="upload", result="ok") == uploads + 1
    assert sample("ssftp_upload_bytes_total") == up_bytes + len(data)
    assert sample("ssftp_download_bytes_total") == down_bytes + len(data)


# --- the flag on serve: a real process --------------------------------------------------------


SERVE_CONFIG = """
users:
  stagingDir:
    - directory: drop
      auth: {username: dropper, password: dropper-pw}
"""


def test_serve_with_a_bad_metrics_listen_says_so_in_one_line(tmp_path):
    config = write_config(tmp_path / "ssftp.yaml", SERVE_CONFIG)
    result = ssftp("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                   "--port", "0", "--metrics-listen", "nope")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ssftp serve: --metrics-listen: 'nope' is not HOST:PORT (e.g. 127.0.0.1:9464)"]


def test_serve_on_a_busy_metrics_port_says_so_in_one_line(tmp_path):
    config = write_config(tmp_path / "ssftp.yaml", SERVE_CONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = ssftp("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                       "--port", "0", "--metrics-listen", f"127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"ssftp serve: cannot listen for metrics on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.stderr


def test_serve_flag_overrides_the_config_and_healthz_sees_the_sftp_server(tmp_path):
    configured, flagged = free_port(), free_port()
    config = write_config(tmp_path / "ssftp.yaml", SERVE_CONFIG + f"""
metrics:
  listen: "127.0.0.1:{configured}"
""")
    proc = subprocess.Popen([SSFTP, "serve", "--config", str(config), "--data-dir",
                             str(tmp_path / "data"), "--port", "0", "--metrics-listen",
                             f"127.0.0.1:{flagged}"], env=child_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        health = wait_for("serve's /healthz", lambda: answer(f"http://127.0.0.1:{flagged}/healthz"))
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "checks": {"sftp": "up"}}
        assert answer(f"http://127.0.0.1:{configured}/healthz") is None
        # serve talks to no clamd: no ssftp_clamd_up (on main a 0, read as "clamd is down").
        scrape = httpx.get(f"http://127.0.0.1:{flagged}/metrics", timeout=10).text
        names = {name for name, _ in scraped(scrape)}
        assert "ssftp_sessions" in names and "ssftp_clamd_up" not in names
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=STOP_TIMEOUT)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert answer(f"http://127.0.0.1:{flagged}/healthz") is None  # stopped with the process


def answer(url: str) -> httpx.Response | None:
    """The response, or None while nothing listens there."""
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None


# --- a real ssftp up, scraped -----------------------------------------------------------------


PARTNER, PARTNER_PW = "partner", "partner-pw-metrics"
CONSUMER, CONSUMER_PW = "consumer", "consumer-pw-metrics"


@dataclass
class MetricsUp:
    up: Up
    clamd: ClamdDaemon
    receiver: WebhookReceiver
    metrics_port: int

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=30)

    def metrics(self) -> dict:
        response = self.get("/metrics")
        assert response.status_code == 200
        return scraped(response.text)

    def scrape_until(self, what: str, condition: Callable[[dict], bool]) -> dict:
        """Scrape /metrics until ``condition`` holds for what it shows; that scrape."""
        def probe() -> dict | None:
            metrics = self.metrics()
            return metrics if condition(metrics) else None

        return wait_for(f"{what} in /metrics", probe, details=self.up.tail)


@pytest.fixture(scope="module")
def gateway_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsUp]:
    """``ssftp up`` scanning with a clamd of this module's own (so a test can stop it), a
    virusFound webhook to a real receiver, and ``--metrics-listen`` on a free port."""
    root = tmp_path_factory.mktemp("metrics-up")
    daemon = ClamdDaemon.start(root / "clamd", max_file_size=10 << 20, database=TEST_SIGNATURES)
    receiver = WebhookReceiver()
    config = write_config(root / "ssftp.yaml", f"""
    sftpPort: 0
    fsyncUploads: false
    clamav: {{address: "{daemon.socket}"}}
    webhooks:
      - {{name: virusFound, url: "{receiver.url}/virus", retries: 0}}
    users:
      stagingDir:
        - directory: box
          auth: {{username: {PARTNER}, password: {PARTNER_PW}}}
      cleanDir:
        - directory: box
          auth: {{username: {CONSUMER}, password: {CONSUMER_PW}}}
    """)
    sftp_port, prefect_port, metrics_port = free_port(), free_port(), free_port()
    data = root / "data"
    out, err = data.with_name("data.stdout"), data.with_name("data.stderr")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [SSFTP, "up", "--config", str(config), "--data-dir", str(data), "--port",
             str(sftp_port), "--prefect-port", str(prefect_port), "--metrics-listen",
             f"127.0.0.1:{metrics_port}"],
            cwd=root, env=child_env(), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True)
    instance = Up(proc, root, data, out, err, sftp_port, prefect_port, [])
    try:
        wait_until_up(instance)
        yield MetricsUp(instance, daemon, receiver, metrics_port)
    finally:
        shut_down(instance)
        receiver.stop()
        daemon.stop()


def test_up_healthz_is_ok_with_every_part_up(gateway_up):
    response = gateway_up.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok",
                               "checks": {"sftp": "up", "clamd": "up", "icap": "off",
                                          "signatures": "unknown", "prefect": "up"}}


def test_up_metrics_move_as_a_partner_uploads_and_files_are_scanned(gateway_up, tmp_path):
    before = gateway_up.metrics()
    clean = b"id,amount\n1,100\n" * 1000
    (tmp_path / "report.csv").write_bytes(clean)
    (tmp_path / "eicar.com").write_bytes(EICAR)
    port = gateway_up.up.sftp_port
    failed = run_sftp(port, PARTNER, ["ls"], cwd=tmp_path, password="not-the-password")
    assert failed.returncode != 0
    put = run_sftp(port, PARTNER, ["put report.csv", "put eicar.com"], cwd=tmp_path,
                   password=PARTNER_PW)
    assert put.returncode == 0, put.stderr
    data = gateway_up.up.data

    def moved(after: dict) -> bool:
        return (value(after, "ssftp_scans_total", verdict="infected")
                - value(before, "ssftp_scans_total", verdict="infected") >= 1
                and value(after, "ssftp_scans_total", verdict="clean")
                - value(before, "ssftp_scans_total", verdict="clean") >= 1
                and value(after, "ssftp_webhooks_total", name="virusFound", result="delivered")
                - value(before, "ssftp_webhooks_total", name="virusFound",
                        result="delivered") >= 1)

    after = gateway_up.scrape_until("scans and the virusFound webhook counted", moved)
    assert (data / "clean" / "box" / "report.csv").read_bytes() == clean
    assert (data / "quarantine" / "box" / "eicar.com").is_file()
    get = run_sftp(port, CONSUMER, ["get report.csv got.csv"], cwd=tmp_path,
                   password=CONSUMER_PW)
    assert get.returncode == 0, get.stderr
    final = gateway_up.scrape_until("the download counted", lambda after: value(
        after, "ssftp_transfers_total", direction="download", result="ok") > value(
        before, "ssftp_transfers_total", direction="download", result="ok"))

    def delta(name: str, /, **labels: str) -> float:
        return value(final, name, **labels) - value(before, name, **labels)

    assert delta("ssftp_logins_total", method="password", result="failed") >= 1
    assert delta("ssftp_logins_total", method="password", result="ok") == 2
    assert delta("ssftp_transfers_total", direction="upload", result="ok") == 2
    assert delta("ssftp_upload_bytes_total") == len(clean) + len(EICAR)
    assert delta("ssftp_download_bytes_total") == len(clean)
    assert delta("ssftp_scans_total", verdict="infected") == 1
    assert delta("ssftp_scans_total", verdict="clean") == 1
    assert delta("ssftp_scan_seconds_count") == 2
    assert delta("ssftp_scan_seconds_sum") > 0
    assert value(after, "ssftp_clamd_up", address=str(gateway_up.clamd.address)) == 1
    assert value(final, "ssftp_staging_files") == 0
    assert len(gateway_up.receiver.received("/virus", "eicar.com")) == 1


def test_up_healthz_is_503_naming_clamd_when_clamd_is_stopped(gateway_up):
    gateway_up.clamd.stop()
    response = gateway_up.get("/healthz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "down" and body["down"] == ["clamd"]
    assert body["checks"] == {"sftp": "up", "clamd": "down", "icap": "off", "signatures": "unknown",
                              "prefect": "up"}
    # the check's PING says so
    assert value(gateway_up.metrics(), "ssftp_clamd_up",
                 address=str(gateway_up.clamd.address)) == 0


def test_up_stops_its_metrics_listener_with_it(gateway_up):
    assert gateway_up.up.interrupt() == 0, gateway_up.up.tail()
    assert answer(f"http://127.0.0.1:{gateway_up.metrics_port}/metrics") is None
    assert json.dumps(gateway_up.up.leftovers(), default=str) == "[]"
