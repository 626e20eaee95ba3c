"""The scan pipeline from the command line, with real parts only: ``ssftp up`` end to end (its
own Prefect server and clamd, OpenSSH ``sftp`` uploads, the Prefect API, the audit log, a clean
Ctrl-C), ``ssftp scan``, ``ssftp worker``'s refusals and ``check-config``'s clamav section.

``ssftp up`` starts once for the module; the test that stops it is the last one in the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ssftp.layout import DataLayout
from ssftp.scan.database import SYSTEM_DATABASE, official_files
from testkit.files import EICAR, sha256_file
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.cli import SSFTP, child_env, ssftp
from tests.support.config import write_config
from tests.support.logs import json_lines
from tests.support.repo import REPO
from tests.support.up import (
    ACCOUNT_DIR,
    CLEAN_NAME,
    CONSUMER,
    CONSUMER_PW,
    PARTNER,
    PARTNER_PW,
    START_TIMEOUT,
    STOP_TIMEOUT,
    SUB_DIR,
    Up,
    Uploaded,
    eicar_in,
    files_under,
    launch_up,
    processes_mentioning,
    shut_down,
    up_config,
    upload_samples,
    verdict_record,
    wait_until_scanned,
    wait_until_up,
)
from tests.support.waiting import wait_for

EXAMPLE_CONFIG = REPO / "config" / "ssftp.example.yaml"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("ssftp-up")
    config = write_config(root / "ssftp.yaml", up_config())
    sftp_port, prefect_port = free_port(), free_port()
    while prefect_port == sftp_port:
        prefect_port = free_port()
    # A space in the data root: clamd.conf, the SQLite URL, the printed hints must cope.
    instance = launch_up(root, config, root / "data root", sftp_port, prefect_port)
    try:
        wait_until_up(instance)
        yield instance
    finally:
        shut_down(instance)


@pytest.fixture(scope="module")
def uploaded(up: Up, tmp_path_factory: pytest.TempPathFactory) -> Uploaded:
    """A partner uploads a normal file into a sub directory with a space, and EICAR."""
    return upload_samples(up, tmp_path_factory.mktemp("up-client"))


def api_post(up: Up, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{up.api}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def audit_scans(up: Up) -> list[dict[str, Any]]:
    events = json_lines(up.data / "log" / "audit.log")
    return [event for event in events if event.get("event") == "scan"]


def test_up_prints_where_to_connect_and_the_prefect_ui(up):
    text = up.stdout
    hint = re.search(r"sftp -P (\d+) (\S+)@127\.0\.0\.1", text)
    assert hint, up.tail()
    assert int(hint.group(1)) == up.sftp_port, "--port did not override sftpPort: 0"
    assert hint.group(2) == PARTNER
    assert f"Prefect:   http://127.0.0.1:{up.prefect_port} (started by this instance)" in text
    assert str(up.data) in text


def ui_settings(port: int) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=30)
    response.raise_for_status()
    return response.json()


def test_up_links_the_runs_that_found_an_infection_in_the_ui_it_serves(up):
    """The banner's ``infected:`` line opens the runs list of Prefect's default UI (v2, whose
    bundle is served under /v2), not the older UI or a 404."""
    found = re.search(r"  infected:  (\S+) ", up.stdout)
    assert found, up.tail()
    url = found.group(1)
    assert url == f"http://127.0.0.1:{up.prefect_port}/v2/runs?tags=infected"
    page = httpx.get(url, headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200
    assert 'src="/v2/assets/' in page.text, page.text[:500]
    assert "v2" in ui_settings(up.prefect_port)["available_uis"]


def test_up_points_its_prefect_ui_at_its_own_port(up):
    """Prefect's default would send the UI to the API on 4200: another server, or none.
    (The UI reads its settings at /ui-settings, beside the API, not under /api.)"""
    assert ui_settings(up.prefect_port)["api_url"] == up.api


@pytest.mark.parametrize("taken_by", ["prefect", "other"])
def test_up_on_a_busy_prefect_port_says_so_naming_the_option(up, tmp_path, taken_by):
    """Something answering on the port (this module's Prefect server, or any listener) is
    not adopted: a one-line error naming --prefect-port, and nothing started."""
    config = write_config(tmp_path / "ssftp.yaml", up_config())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = up.prefect_port if taken_by == "prefect" else listener.getsockname()[1]
        result = ssftp("up", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                       "--port", str(free_port()), "--prefect-port", str(port), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"ssftp up: --prefect-port {port} is taken"), line
    assert f"--prefect-url http://127.0.0.1:{port}/api" in line
    assert "ssftp is up." not in result.stdout
    assert not list((tmp_path / "data" / "system").glob("prefect/*.db"))


def test_up_whose_prefect_server_cannot_start_says_so_and_leaves_nothing_running(tmp_path):
    """clamd starts while the Prefect server comes up. A server that exits instead (here its
    database file cannot be opened) is one error with the server's last lines, and the clamd
    started beside it is stopped again."""
    config = write_config(tmp_path / "ssftp.yaml", up_config())
    (tmp_path / "a-file").touch()
    data, port = tmp_path / "data", free_port()
    env = child_env(PREFECT_SERVER_DATABASE_CONNECTION_URL=(
        f"sqlite+aiosqlite:///{tmp_path}/a-file/prefect.db"))
    result = ssftp("up", "--config", str(config), "--data-dir", str(data), "--port",
                   str(free_port()), "--prefect-port", str(port), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"ssftp up: the Prefect server did not start on port {port}; its last lines:" \
        in result.stderr, result.stderr[-3000:]
    assert "unable to open database file" in result.stderr
    assert "ssftp is up." not in result.stdout
    assert '"event": "clamd started"' in result.stdout + result.stderr, result.stderr[-3000:]
    # Stopped by the stop, not only by the kernel as up exits: its pid file is gone too.
    assert not DataLayout.at(data).clamd_pid_file.exists()
    assert not processes_mentioning(str(data))


def test_up_started_its_own_prefect_server_with_sqlite_under_system(up):
    home = up.data / "system" / "prefect"
    assert list(home.glob("*.db")), f"no SQLite DB in {home}: {sorted(home.iterdir())}"
    servers = [proc for proc in up.children if "prefect" in proc.cmdline
               and "server start" in proc.cmdline]
    assert len(servers) == 1, [proc.cmdline for proc in up.children]
    assert f"--port {up.prefect_port}" in servers[0].cmdline
    assert servers[0].environ.get("PREFECT_HOME") == str(home)
    assert servers[0].environ.get("PREFECT_SERVER_ANALYTICS_ENABLED") == "false"
    clamds = [proc for proc in up.children if "clamd" in proc.cmdline.split(" ")[0]]
    assert len(clamds) == 1, [proc.cmdline for proc in up.children]
    assert str(up.data / "system") in clamds[0].cmdline
    assert httpx.get(f"{up.api}/health", timeout=10).is_success


def test_up_routes_clean_to_clean_and_eicar_to_quarantine(up, uploaded):
    wait_until_scanned(up, uploaded)
    assert sha256_file(uploaded.clean_file) == hashlib.sha256(uploaded.clean_bytes).hexdigest()
    assert uploaded.quarantined.read_bytes() == EICAR
    record = verdict_record(uploaded.quarantined)
    assert record is not None
    assert record["verdict"] == "infected"
    assert record["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert "EICAR" in (record["signature"] or "")
    assert eicar_in(up.data / "clean") == []
    # Moved, not copied: nothing of the upload is left in the partner's staging directory.
    assert files_under(up.data / "staging" / ACCOUNT_DIR) == []


def test_scan_finds_the_clamd_that_up_started_for_its_data_root(up, tmp_path):
    (tmp_path / "eicar.com").write_bytes(EICAR)
    result = ssftp("scan", "--data-dir", str(up.data), str(tmp_path / "eicar.com"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "infected: Ssftp.Test.EICAR" in result.stdout


def test_scan_takes_a_relative_socket_path(up, tmp_path):
    (tmp_path / "eicar.com").write_bytes(EICAR)
    result = ssftp("scan", "--clamd", "system/clamd/clamd.sock", str(tmp_path / "eicar.com"),
                   cwd=up.data)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "infected: Ssftp.Test.EICAR" in result.stdout


def test_up_console_has_no_human_prefect_lines_when_not_a_terminal(up, uploaded):
    """Not a terminal: the console is JSON lines, Prefect's included (the scan run has
    logged by now), in ssftp's shape (they were Prefect's ~1.5 KB records of every attribute
    of the log record); ``ssftp is up.`` and its hints are the only plain text."""
    wait_until_scanned(up, uploaded)
    human = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| ")
    streams = up.stdout + up.stderr_path.read_text(errors="replace")
    assert not [line for line in streams.splitlines() if human.match(line)]
    records = [json.loads(line) for line in streams.splitlines() if line.startswith("{")]
    runs = [record for record in records
            if record.get("log", record.get("name", "")).startswith("prefect.flow_runs")]
    assert runs
    assert all(set(record) <= {"time", "level", "log", "event", "flow_run", "task_run",
                               "exception"} for record in runs)


def test_up_shows_the_scan_run_and_its_verdict_table_in_prefect(up, uploaded):
    wait_until_scanned(up, uploaded)
    state: dict[str, Any] = {}

    def completed_scan_runs() -> dict[str, dict[str, Any]] | None:
        run_ids = {event["flow_run_id"] for event in audit_scans(up)}
        runs = api_post(up, "/flow_runs/filter", {"limit": 50})
        state["runs"] = [(run["id"], run["name"], run["state_type"]) for run in runs]
        state["audit run ids"] = run_ids
        done = {run["id"]: run for run in runs
                if run["name"].startswith("scan") and run["state_type"] == "COMPLETED"}
        # Every run the audit log names (one or two batches) is a completed scan run.
        return done if run_ids and run_ids <= set(done) else None

    def verdict_rows() -> list[dict[str, Any]] | None:
        artifacts = api_post(up, "/artifacts/filter", {"limit": 50})
        tables = [a for a in artifacts if a.get("key") == "scan-verdicts"]
        state["artifacts"] = [(a.get("key"), a.get("type")) for a in artifacts]
        rows = [row for a in tables
                for row in (json.loads(a["data"]) if isinstance(a["data"], str) else a["data"])]
        files = {row["file"] for row in rows}
        wanted = {f"{ACCOUNT_DIR}/{SUB_DIR}/{CLEAN_NAME}", f"{ACCOUNT_DIR}/eicar.com"}
        return rows if wanted <= files else None

    wait_for("two scan events in audit.log", lambda: len(audit_scans(up)) >= 2,
             details=up.tail)
    wait_for("the audit log's flow runs completed in Prefect, named scan*",
             completed_scan_runs, details=lambda: repr(state))
    rows = wait_for("scan-verdicts artifacts naming both files", verdict_rows,
                    details=lambda: repr(state))
    by_file = {row["file"]: row for row in rows}
    clean = by_file[f"{ACCOUNT_DIR}/{SUB_DIR}/{CLEAN_NAME}"]
    infected = by_file[f"{ACCOUNT_DIR}/eicar.com"]
    assert clean["verdict"] == "clean"
    assert clean["sha256"] == hashlib.sha256(uploaded.clean_bytes).hexdigest()
    assert clean["destination"] == f"clean/{ACCOUNT_DIR}/{SUB_DIR}/{CLEAN_NAME}"
    assert infected["verdict"] == "infected"
    assert "EICAR" in infected["signature"]
    assert infected["destination"] == f"quarantine/{ACCOUNT_DIR}/eicar.com"
    # Each table belongs to one of those runs.
    tables = [a for a in api_post(up, "/artifacts/filter", {"limit": 50})
              if a.get("key") == "scan-verdicts"]
    assert {a["flow_run_id"] for a in tables} <= state["audit run ids"]


def test_up_keeps_its_own_signatures_fresh_as_a_prefect_deployment(up):
    """clamd loads the data root's own database, seeded at start; ``signatures/<instance>``
    runs hourly; without official signatures to copy, one update runs at start, and offline
    it ends Completed (a warning in its log, not a failure) with the signatures it kept."""
    database = up.data / "system" / "clamav"
    clamd_conf = (up.data / "system" / "clamd" / "clamd.conf").read_text()
    assert f"DatabaseDirectory {database}\n" in clamd_conf
    assert {"ssftp-test.hdb", "ssftp-test.ndb", "ssftp-generation.hdb"} <= {
        path.name for path in database.iterdir()}
    [deployment] = [d for d in api_post(up, "/deployments/filter", {"limit": 50})
                    if (d["entrypoint"] or "").endswith("signatures.signatures")]
    assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [3600.0]
    if official_files(SYSTEM_DATABASE):
        return  # copied at start: the first update waits for the schedule

    def finished_update() -> dict[str, Any] | None:
        runs = api_post(up, "/flow_runs/filter", {"limit": 50})
        return next((run for run in runs if run["name"] == "update signatures"
                     and run["state_type"] in ("COMPLETED", "FAILED", "CRASHED")), None)

    run = wait_for("the update at start to finish", finished_update, details=up.tail)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["state"]["message"].startswith(("unchanged: ClamAV ", "ClamAV ")), run["state"]


def test_up_audit_log_has_a_scan_event_per_file(up, uploaded):
    wait_until_scanned(up, uploaded)
    wanted = {f"{ACCOUNT_DIR}/{SUB_DIR}/{CLEAN_NAME}": ("clean", uploaded.clean_bytes),
              f"{ACCOUNT_DIR}/eicar.com": ("infected", EICAR)}

    def events() -> dict[str, dict[str, Any]] | None:
        found = {event["file"]: event for event in audit_scans(up) if event["file"] in wanted}
        return found if len(found) == len(wanted) else None

    found = wait_for("a scan event per file in log/audit.log", events,
                     details=lambda: repr(audit_scans(up)))
    for file, (verdict, data) in wanted.items():
        event = found[file]
        assert event["verdict"] == verdict, event
        assert event["sha256"] == hashlib.sha256(data).hexdigest(), event
        assert event["size"] == len(data), event
        assert event["account"] == PARTNER, event
        assert event["flow_run_id"], event
    assert found[f"{ACCOUNT_DIR}/eicar.com"]["destination"] == \
        f"quarantine/{ACCOUNT_DIR}/eicar.com"


def test_up_consumer_downloads_the_clean_file_and_never_sees_eicar(up, uploaded, tmp_path):
    wait_until_scanned(up, uploaded)
    got = run_sftp(up.sftp_port, CONSUMER, [f'get "{SUB_DIR}/{CLEAN_NAME}" fetched.csv',
                                             "ls -1a", f'ls -1a "{SUB_DIR}"'],
                   cwd=tmp_path, password=CONSUMER_PW, timeout=120)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (tmp_path / "fetched.csv").read_bytes() == uploaded.clean_bytes
    assert SUB_DIR in got.stdout and CLEAN_NAME in got.stdout
    assert "eicar" not in got.stdout.lower()
    refused = run_sftp(up.sftp_port, CONSUMER, ["get eicar.com"], cwd=tmp_path,
                       password=CONSUMER_PW, timeout=120)
    assert refused.returncode != 0
    assert not (tmp_path / "eicar.com").exists()


# --- ssftp worker (needs the Prefect server of `up`, so before the test that stops it) ---------


def worker_config(directory: Path, clamav: str = "") -> Path:
    return write_config(directory / "worker.yaml", f"""
    users:
      stagingDir:
        - directory: drop
          auth: {{username: dropper, password: dropper-pw}}
    {clamav}
    """)


@pytest.mark.parametrize("api_url", [None, "dead"], ids=["unset", "not-answering"])
def test_worker_needs_a_prefect_server(tmp_path, api_url):
    extra = {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    if api_url == "dead":
        extra["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
    result = ssftp("worker", "--config", str(worker_config(tmp_path)),
                   "--data-dir", str(tmp_path / "data"), env=child_env(**extra))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PREFECT_API_URL" in result.stderr


def test_worker_with_scanning_on_needs_a_clamav_address(up, tmp_path):
    assert up.proc.poll() is None, "ssftp up is not running"
    result = ssftp("worker", "--config", str(worker_config(tmp_path)),
                   "--data-dir", str(tmp_path / "data"),
                   env=child_env(PREFECT_API_URL=up.api,
                                 PREFECT_HOME=str(tmp_path / "prefect-home")))
    assert result.returncode != 0, result.stdout + result.stderr
    assert "clamav.address" in result.stderr


def test_worker_scans_a_dropped_file_against_a_shared_prefect_server(up, clamd, tmp_path):
    """A split deployment: `ssftp worker` with its own data root, on the Prefect server of `up`."""
    assert up.proc.poll() is None, "ssftp up is not running"
    data = tmp_path / "data"
    config = worker_config(tmp_path, clamav=f"clamav: {{address: '{clamd.socket}'}}")
    (data / "staging" / "drop").mkdir(parents=True)
    out = (tmp_path / "worker.out").open("wb")
    proc = subprocess.Popen([SSFTP, "worker", "--config", str(config), "--data-dir", str(data)],
                            env=child_env(PREFECT_API_URL=up.api,
                                          PREFECT_HOME=str(tmp_path / "prefect-home")),
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    out.close()

    def log() -> str:
        return (tmp_path / "worker.out").read_text(errors="replace")[-4000:]

    try:
        wait_for("the worker starting", lambda: "scan worker started" in log()
                 or proc.poll() is not None, details=log)
        assert proc.poll() is None, log()
        # Written by another process than the SFTP server: taken once it is stable.
        (data / "staging" / "drop" / "note.txt").write_bytes(b"dropped by a batch job\n")
        (data / "staging" / "drop" / "eicar.com").write_bytes(EICAR)
        wait_for("note.txt in clean/ and eicar.com in quarantine/",
                 lambda: (data / "clean" / "drop" / "note.txt").is_file()
                 and (data / "quarantine" / "drop" / "eicar.com").is_file(), details=log)
        assert (data / "clean" / "drop" / "note.txt").read_bytes() == b"dropped by a batch job\n"
        assert eicar_in(data / "clean") == []
        scans = [json.loads(line) for line in (data / "log" / "audit.log").read_text()
                 .splitlines() if '"scan"' in line]
        run_ids = {event["flow_run_id"] for event in scans}
        runs = {run["id"]: run for run in api_post(up, "/flow_runs/filter", {"limit": 50})}
        assert run_ids and run_ids <= set(runs), (run_ids, list(runs))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    assert code == 0, f"worker exit status {code} after SIGINT\n{log()}"


# --- a second ssftp up told to use the first one's Prefect server (a chain sharing one UI) --------


def test_second_up_shares_the_running_prefect_server_and_leaves_it_running(up, tmp_path):
    assert up.proc.poll() is None, "ssftp up is not running"
    config = write_config(tmp_path / "ssftp.yaml", up_config())
    second = launch_up(tmp_path, config, tmp_path / "data", free_port(), free_port(),
                       prefect_url=up.api)
    try:
        wait_until_up(second)
        assert f"Prefect:   http://127.0.0.1:{up.prefect_port} (not ours: --prefect-url)" \
            in second.stdout
        assert not [p.cmdline for p in second.children if "prefect" in p.cmdline], \
            "a second Prefect server was started"
        assert not list((second.data / "system").glob("prefect/*.db"))
        (tmp_path / "hop.txt").write_bytes(b"second hop\n")
        put = run_sftp(second.sftp_port, PARTNER, ["put hop.txt"], cwd=tmp_path,
                       password=PARTNER_PW, timeout=120)
        assert put.returncode == 0, put.stdout + put.stderr
        target = second.data / "clean" / ACCOUNT_DIR / "hop.txt"
        wait_for("hop.txt in the second instance's clean/", target.is_file,
                 details=second.tail)
        scans = wait_for("the scan in the second instance's audit log",
                         lambda: audit_scans(second), details=second.tail)
        run_id = scans[0]["flow_run_id"]
        # Asked by id: the module's up has made more runs than a page holds by now.
        wait_for("the second instance's scan run completed in the shared Prefect server",
                 lambda: [run["state_type"] for run in api_post(
                     up, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})]
                 == ["COMPLETED"])
        assert second.interrupt() == 0, second.tail()
        wait_for("no process of the second instance left", lambda: not second.leftovers(),
                 timeout=30)
        # It did not own the Prefect server, so it did not stop it.
        assert httpx.get(f"{up.api}/health", timeout=10).is_success
        assert up.proc.poll() is None
    finally:
        shut_down(second)


def start_on_busy_port(up: Up, tmp_path: Path) -> tuple[Up, int | None]:
    """A second ``ssftp up`` told to listen on the first one's SFTP port."""
    config = write_config(tmp_path / "ssftp.yaml", up_config())
    busy = launch_up(tmp_path, config, tmp_path / "data", up.sftp_port, free_port(),
                     prefect_url=up.api)
    try:
        code = busy.proc.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        code = None
    return busy, code


def test_up_on_a_busy_sftp_port_fails_and_leaves_nothing_running(up, tmp_path):
    assert up.proc.poll() is None, "ssftp up is not running"
    busy, code = start_on_busy_port(up, tmp_path)
    try:
        assert code is not None and code != 0, f"exit status {code}\n{busy.tail()}"
        assert "ssftp is up." not in busy.stdout
        errors = busy.stderr_path.read_text()
        assert "address already in use" in errors.lower() and str(up.sftp_port) in errors
        # The clamd it had started is stopped again; the shared Prefect server is not.
        wait_for("no process of the failed instance left", lambda: not busy.leftovers(),
                 timeout=30,
                 details=lambda: "\n".join(f"{p.pid}: {p.cmdline}" for p in busy.leftovers()))
        assert httpx.get(f"{up.api}/health", timeout=10).is_success
    finally:
        shut_down(busy)


def test_up_on_a_busy_sftp_port_says_so_without_a_traceback(up, tmp_path):
    assert up.proc.poll() is None, "ssftp up is not running"
    busy, code = start_on_busy_port(up, tmp_path)
    try:
        assert code is not None and code != 0
        errors = busy.stderr_path.read_text()
        assert "Traceback" not in errors, errors[-2000:]
        assert "ssftp up:" in errors
    finally:
        shut_down(busy)


# --- ssftp up, stopped: last of the tests that use it ------------------------------------------


def test_up_stops_cleanly_on_ctrl_c_and_leaves_nothing_running(up, uploaded):
    wait_until_scanned(up, uploaded)
    assert up.proc.poll() is None, f"ssftp up died on its own\n{up.tail()}"
    assert up.children, "ssftp up had started no child processes"
    code = up.interrupt()
    assert code == 0, f"ssftp up exit status after SIGINT: {code}\n{up.tail()}"
    # Its clamd and Prefect server go with it (given a moment to be reaped).
    wait_for("no process of this ssftp up instance left",
             lambda: not up.leftovers(), timeout=30,
             details=lambda: "\n".join(f"{p.pid}: {p.cmdline}" for p in up.leftovers()))
    assert not httpx_answers(f"{up.api}/health")
    # The quarantine outlived the run, and clean/ never saw EICAR.
    assert uploaded.quarantined.read_bytes() == EICAR
    assert eicar_in(up.data / "clean") == []


def httpx_answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return False
    return True


# --- ssftp up refuses a bad config before starting anything ------------------------------------


def test_up_refuses_a_bad_clamav_address_without_starting_anything(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", """
    users:
      stagingDir:
        - directory: d
          auth: {username: u, password: p}
    clamav:
      address: nonsense
    """)
    prefect_port = free_port()
    result = ssftp("up", "--config", str(bad), "--data-dir", str(tmp_path / "data"),
                   "--prefect-port", str(prefect_port), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{bad}:7: clamav.address" in result.stderr
    assert not list((tmp_path / "data" / "system").glob("prefect/*.db"))
    assert not httpx_answers(f"http://127.0.0.1:{prefect_port}/api/health")


# --- ssftp scan ---------------------------------------------------------------------------------


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """clean.txt, eicar.com and a directory tree with both."""
    (tmp_path / "clean.txt").write_bytes(b"nothing to see here\n")
    (tmp_path / "eicar.com").write_bytes(EICAR)
    tree = tmp_path / "tree"
    (tree / "nested" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "nested" / "deeper" / "b.txt").write_text("b\n")
    (tree / "nested" / "bad file.com").write_bytes(b"prefix " + EICAR)
    return tmp_path


def verdict_lines(stdout: str) -> dict[str, str]:
    """``path: verdict: detail`` lines as {path: "verdict: detail"}."""
    lines = {}
    for line in stdout.splitlines():
        path, _, rest = line.partition(": ")
        lines[path] = rest
    return lines


def test_scan_clean_file(clamd, samples):
    result = ssftp("scan", "--clamd", str(clamd.socket), str(samples / "clean.txt"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdict_lines(result.stdout) == {str(samples / "clean.txt"): "clean: OK"}


def test_scan_eicar_names_the_signature(clamd, samples):
    result = ssftp("scan", "--clamd", str(clamd.socket), str(samples / "clean.txt"),
                   str(samples / "eicar.com"))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = verdict_lines(result.stdout)
    assert lines[str(samples / "clean.txt")] == "clean: OK"
    assert lines[str(samples / "eicar.com")].startswith("infected: Ssftp.Test.EICAR")
    assert lines[str(samples / "eicar.com")].endswith("FOUND")


def test_scan_directory_is_recursive(clamd, samples):
    tree = samples / "tree"
    result = ssftp("scan", "--clamd", str(clamd.socket), str(tree))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = verdict_lines(result.stdout)
    assert set(lines) == {str(tree / "a.txt"), str(tree / "nested" / "deeper" / "b.txt"),
                          str(tree / "nested" / "bad file.com")}
    assert lines[str(tree / "a.txt")] == "clean: OK"
    assert lines[str(tree / "nested" / "deeper" / "b.txt")] == "clean: OK"
    assert lines[str(tree / "nested" / "bad file.com")].startswith("infected: ")


@pytest.mark.parametrize("where", ["refused-tcp", "missing-socket"])
def test_scan_with_a_clamd_that_does_not_answer_is_an_error(samples, where):
    address = (f"127.0.0.1:{free_port()}" if where == "refused-tcp"
               else str(samples / "no-such-dir" / "clamd.sock"))
    result = ssftp("scan", "--clamd", address, str(samples / "clean.txt"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error" in result.stdout.lower()
    assert ": clean:" not in result.stdout


def test_scan_with_a_silent_clamd_times_out_as_an_error(samples):
    """A listener that accepts and never replies: the configured timeout ends it, not clean."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        config = write_config(samples / "silent.yaml", f"""
        clamav:
          address: 127.0.0.1:{port}
          timeout: 2
        """)
        result = ssftp("scan", "--config", str(config), str(samples / "clean.txt"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error" in result.stdout.lower() and "timed out" in result.stdout
    assert ": clean:" not in result.stdout


@pytest.mark.parametrize("with_config", [False, True], ids=["no-config", "config-without-clamav"])
def test_scan_without_clamd_says_how_to_configure_one(samples, with_config):
    args = ["scan", str(samples / "eicar.com")]
    if with_config:
        args[1:1] = ["--config", str(worker_config(samples))]
    result = ssftp(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--clamd" in result.stderr
    assert "clamav.address" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("mode", [None, "path", "fd", "stream"])
def test_scan_uses_the_clamav_section_of_config(clamd, samples, mode):
    text = f"clamav:\n  address: unix:{clamd.socket}\n" + (f"  mode: {mode}\n" if mode else "")
    config = write_config(samples / "scan.yaml", text)
    result = ssftp("scan", "--config", str(config), str(samples / "clean.txt"),
                   str(samples / "eicar.com"))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = verdict_lines(result.stdout)
    assert lines[str(samples / "clean.txt")] == "clean: OK"
    assert lines[str(samples / "eicar.com")].startswith("infected: Ssftp.Test.EICAR")


def test_scan_clamd_option_overrides_the_config(clamd, samples):
    config = write_config(samples / "dead.yaml", f"clamav:\n  address: 127.0.0.1:{free_port()}\n")
    dead = ssftp("scan", "--config", str(config), str(samples / "eicar.com"))
    assert dead.returncode == 2, dead.stdout + dead.stderr
    result = ssftp("scan", "--config", str(config), "--clamd", str(clamd.socket),
                   str(samples / "eicar.com"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "infected: Ssftp.Test.EICAR" in result.stdout


# --- check-config ------------------------------------------------------------------------------


def test_check_config_accepts_the_example():
    result = ssftp("check-config", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid (1 staging and 1 clean accounts, 0 downloaders, 0 uploaders)" in result.stdout


def test_check_config_rejects_a_nonsense_clamav_address(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", """
    sftpPort: 2002
    clamav:
      address: nonsense
      timeout: 30
    """)
    result = ssftp("check-config", str(bad))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{bad}:4: clamav.address" in result.stderr
    assert "host:port" in result.stderr  # says what an address looks like


def test_scan_of_a_missing_path_or_an_empty_directory_is_not_all_clear(clamd, tmp_path):
    missing = ssftp("scan", "--clamd", str(clamd.socket), str(tmp_path / "no-such-file"))
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr
    assert "clamd" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = ssftp("scan", "--clamd", str(clamd.socket), str(tmp_path / "empty"))
    assert empty.returncode == 2
    assert "no files to scan" in empty.stderr
