"""Prometheus metrics and /healthz: the listener, its checks, the config key and the flag, each
metric moved where its fact is known, and a real ``ssftp up`` scraped while a partner uploads a
clean file and EICAR (real clamd, real Prefect, OpenSSH ``sftp``, a real webhook receiver).

The metrics are one set per process (ssftp.metrics), so the in-process tests compare values
before and after rather than absolute figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from server.defender import Defender
from ssftp.addresses import ClamdAddress, parse_listen
from ssftp.config import load_config
from ssftp.config.schema import ScanningSettings
from ssftp.errors import ConfigError, InvalidValueError, ListenError
from ssftp.file_stamp import FileStamp
from ssftp.metrics import REGISTRY, TransferTotals
from ssftp.runtime.clamd_daemon import TEST_SIGNATURES, ClamdDaemon
from ssftp.runtime.listener import MetricsListener, clamd_status, health_report
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.queue import Lane, StagingQueue
from ssftp.transfer.state import STATE_FILE, TransferState, stored_totals
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.conftest import CONSUMER_PASSWORD, PARTNER_PASSWORD
from tests.support import WebhookReceiver, write_config
from tests.test_cli_pipeline import (
    EICAR,
    SSFTP,
    STOP_TIMEOUT,
    Up,
    child_env,
    shut_down,
    ssftp,
    wait_for,
    wait_until_up,
)
from tests.test_scan_core import make_scanner, stage

EXPORTED = ["ssftp_logins_total", "ssftp_sessions", "ssftp_upload_bytes_total",
            "ssftp_download_bytes_total", "ssftp_transfers_total", "ssftp_scans_total",
            "ssftp_scan_seconds_count", "ssftp_staging_files", "ssftp_clamd_up",
            "ssftp_webhooks_total", "ssftp_defender_bans_total"]


def sample(name: str, /, **labels: str) -> float:
    """A metric's value in this process's registry (0 before it was ever counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics text as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, /, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- HOST:PORT, the config key and the flag ---------------------------------------------------


@pytest.mark.parametrize(("text", "address"), [("127.0.0.1:9464", ("127.0.0.1", 9464)),
                                               ("[::1]:9464", ("::1", 9464)),
                                               ("localhost:1", ("localhost", 1))])
def test_parse_listen_takes_host_and_port(text, address):
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["9464", "127.0.0.1", "127.0.0.1:", ":9464", "h:0",
                                  "h:65536", "h:http", "h:-1"])
def test_parse_listen_refuses_what_is_not_host_and_port(text):
    with pytest.raises(InvalidValueError, match="is not HOST:PORT"):
        parse_listen(text)


def test_metrics_listen_is_off_unless_configured(tmp_path):
    assert load_config(write_config(tmp_path / "a.yaml", "{}")).config.metrics.listen is None
    config = load_config(write_config(tmp_path / "b.yaml", """
    metrics:
      listen: "127.0.0.1:9464"
    """)).config
    assert config.metrics.listen == "127.0.0.1:9464"


def test_a_bad_metrics_listen_is_a_config_error_at_its_key(tmp_path):
    path = write_config(tmp_path / "bad.yaml", """
    metrics:
      listen: "9464"
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "metrics.listen" in str(caught.value) and "HOST:PORT" in str(caught.value)
    result = ssftp("check-config", str(path))
    assert result.returncode == 2
    assert "metrics.listen" in result.stderr and "Traceback" not in result.stderr


# --- /healthz, as plain functions -------------------------------------------------------------


def test_health_is_ok_when_nothing_is_down():
    status, body = health_report({"sftp": lambda: "up", "clamd": lambda: "off"})
    assert status == 200
    assert body == {"status": "ok", "checks": {"sftp": "up", "clamd": "off"}}


def test_health_names_what_is_down_with_503():
    status, body = health_report({"sftp": lambda: "up", "clamd": lambda: "down",
                                  "prefect": lambda: "down"})
    assert status == 503
    assert body == {"status": "down", "down": ["clamd", "prefect"],
                    "checks": {"sftp": "up", "clamd": "down", "prefect": "down"}}


def test_clamd_check_pings_the_scanning_clamd_and_sets_clamd_up(clamd, tmp_path):
    assert clamd_status(None) == "off"
    assert clamd_status(ClamdClient(clamd.address)) == "up"
    assert sample("ssftp_clamd_up") == 1
    nobody = ClamdClient(ClamdAddress(unix_path=str(tmp_path / "nobody.sock")))
    assert clamd_status(nobody) == "down"
    assert sample("ssftp_clamd_up") == 0


def test_clamd_check_of_a_hung_clamd_is_down_not_hung():
    """A listener that accepts and never answers: the check's own bound ends it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host, port = silent.getsockname()
        client = ClamdClient(ClamdAddress(host=host, port=port), timeout=3600)
        assert clamd_status(client) == "down"


# --- the listener -----------------------------------------------------------------------------


@contextlib.contextmanager
def listening(checks: dict) -> Iterator[str]:
    listener = MetricsListener(("127.0.0.1", 0), checks)
    try:
        yield f"http://127.0.0.1:{listener.port}"
    finally:
        listener.stop()


def test_listener_serves_ssftp_metrics_only():
    with listening({}) as url:
        response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {name for name, _ in scraped(response.text)}
    assert set(EXPORTED) - {"ssftp_webhooks_total", "ssftp_logins_total",
                            "ssftp_transfers_total", "ssftp_scans_total",
                            "ssftp_clamd_up"} <= names
    # Prefect's own client counters live in the default registry, not in ours.
    assert all(name.startswith("ssftp_") for name in names), names


def test_listener_answers_healthz_with_the_checks_as_json():
    state = {"clamd": "up"}
    with listening({"clamd": lambda: state["clamd"]}) as url:
        ok = httpx.get(f"{url}/healthz", timeout=10)
        state["clamd"] = "down"
        down = httpx.get(f"{url}/healthz", timeout=10)
        missing = httpx.get(f"{url}/other", timeout=10)
    assert (ok.status_code, ok.json()) == (200, {"status": "ok", "checks": {"clamd": "up"}})
    assert down.status_code == 503
    assert down.json() == {"status": "down", "down": ["clamd"], "checks": {"clamd": "down"}}
    assert missing.status_code == 404


def test_listener_on_a_busy_port_is_a_listen_error_and_stop_frees_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen for metrics on 127.0.0.1:{port}"):
            MetricsListener(("127.0.0.1", port), {})
    listener = MetricsListener(("127.0.0.1", 0), {})
    port = listener.port
    listener.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    MetricsListener(("127.0.0.1", port), {}).stop()  # free again at once


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


def test_scheduled_transfers_are_the_data_roots_totals_and_the_servers_are_added(tmp_path):
    """The downloaders' and uploaders' runs are processes of their own: they count their
    files in system/transfers.sqlite, and the process that serves them exports the sum."""
    registry = CollectorRegistry()
    totals = TransferTotals(registry)
    system = tmp_path / "system"
    system.mkdir()
    totals.read_from(partial(stored_totals, system))
    assert registry.get_sample_value("ssftp_transfers_total", {"direction": "pull",
                                                               "result": "ok"}) is None
    assert not (system / STATE_FILE).exists()  # a scrape creates nothing
    with TransferState.open(system) as run_one, TransferState.open(system) as run_two:
        run_one.add_to_totals("pull", ["ok", "ok", "failed"])
        run_two.add_to_totals("pull", ["ok"])
        run_two.add_to_totals("push", [])
    totals.inc("upload", "ok")

    def value(direction: str, result: str) -> float | None:
        return registry.get_sample_value("ssftp_transfers_total",
                                         {"direction": direction, "result": result})

    assert (value("pull", "ok"), value("pull", "failed"), value("upload", "ok")) == (3, 1, 1)
    assert value("push", "ok") is None


def test_a_ban_is_counted_once():
    defender = Defender(max_failures=2)
    bans = sample("ssftp_defender_bans_total")
    assert not defender.record_failure("192.0.2.1")
    assert defender.record_failure("192.0.2.1")
    assert sample("ssftp_defender_bans_total") == bans + 1


def test_scans_are_counted_by_verdict_and_timed_from_the_upload(layout, client, owners):
    scanner = make_scanner(layout, client, owners)
    clean = sample("ssftp_scans_total", verdict="clean")
    infected = sample("ssftp_scans_total", verdict="infected")
    timed = sample("ssftp_scan_seconds_count")
    for name, data in (("ok.txt", b"fine\n"), ("eicar.com", EICAR)):
        assert scanner.scan(stage(layout, f"partner-a/{name}", data)) is not None
    assert sample("ssftp_scans_total", verdict="clean") == clean + 1
    assert sample("ssftp_scans_total", verdict="infected") == infected + 1
    assert sample("ssftp_scan_seconds_count") == timed + 2


def test_a_file_with_its_source_mtime_is_timed_from_its_staging(layout, client, owners):
    """``put -p`` leaves the source's mtime (here a year ago) on the staged file: on main the
    histogram took that as the upload's close and counted a year-long scan."""
    scanner = make_scanner(layout, client, owners)
    staged = stage(layout, "partner-a/kept-times.txt", b"times kept\n")
    year_ago = time.time() - 365 * 24 * 3600
    os.utime(staged, (year_ago, year_ago))
    slow = sample("ssftp_scan_seconds_bucket", le="+Inf") - sample("ssftp_scan_seconds_bucket",
                                                                   le="3600.0")
    assert scanner.scan(staged) is not None
    assert (sample("ssftp_scan_seconds_bucket", le="+Inf")
            - sample("ssftp_scan_seconds_bucket", le="3600.0")) == slow


def test_a_scan_that_could_not_reach_clamd_is_an_error_and_not_timed(layout, owners, tmp_path):
    scanner = make_scanner(layout, ClamdClient(ClamdAddress(unix_path=str(tmp_path / "no"))),
                           owners)
    errors, timed = sample("ssftp_scans_total", verdict="error"), sample("ssftp_scan_seconds_count")
    assert scanner.scan(stage(layout, "partner-a/later.txt", b"later\n")) is not None
    assert sample("ssftp_scans_total", verdict="error") == errors + 1
    assert sample("ssftp_scan_seconds_count") == timed  # still in staging: no verdict yet


def test_staging_files_counts_what_the_queue_holds(tmp_path):
    settings = ScanningSettings.model_validate({"stableSeconds": 1, "batchWindowSeconds": 0})
    queue = StagingQueue(tmp_path, lambda: settings, clock=lambda: 0.0,
                         stamp_of=lambda path: FileStamp(1, 1, 1))
    assert queue.waiting_files() == 0
    queue.saw(tmp_path / "a")
    queue.take_over([tmp_path / "b"])
    assert queue.waiting_files() == 2
    assert sample("ssftp_staging_files") == 2  # the gauge asks the newest queue
    queue.collect()
    batch = queue.take_batch(Lane.SMALL)
    assert batch == [tmp_path / "b"]
    assert queue.waiting_files() == 1  # the batch is the run's now
    queue.run_failed(batch)
    assert queue.waiting_files() == 2  # waiting for its retry


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
                               "checks": {"sftp": "up", "clamd": "up", "prefect": "up"}}


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
    assert value(after, "ssftp_clamd_up") == 1
    assert value(final, "ssftp_staging_files") == 0
    assert len(gateway_up.receiver.received("/virus", "eicar.com")) == 1


def test_up_healthz_is_503_naming_clamd_when_clamd_is_stopped(gateway_up):
    gateway_up.clamd.stop()
    response = gateway_up.get("/healthz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "down" and body["down"] == ["clamd"]
    assert body["checks"] == {"sftp": "up", "clamd": "down", "prefect": "up"}
    assert value(gateway_up.metrics(), "ssftp_clamd_up") == 0  # the check's PING says so


def test_up_stops_its_metrics_listener_with_it(gateway_up):
    assert gateway_up.up.interrupt() == 0, gateway_up.up.tail()
    assert answer(f"http://127.0.0.1:{gateway_up.metrics_port}/metrics") is None
    assert json.dumps(gateway_up.up.leftovers(), default=str) == "[]"
