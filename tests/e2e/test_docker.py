"""docker/compose.yaml built and run for real: the production deployment as an operator gets it.

One compose cycle for the module, on free host ports and a project name of its own: build the
images, ``up -d`` with a test config, upload EICAR and a clean file with OpenSSH ``sftp`` to the
published port, find them in ``quarantine/`` and ``clean/`` of the data volume and the scan runs
in the published Prefect API (and in PostgreSQL), the UI served, no secret in an image, scale the
worker to 2 (each file is scanned exactly once, and either worker scans), edit the mounted config
(it reloads), ``stop`` within Docker's 10 s, and ``down -v``: no container, network or volume of
the project is left. Images built stay (the next run's cache). docker/healthcheck.py's logic is
tested directly, without Docker, in tests/unit/test_docker_healthcheck.py.

Docker comes from scripts/docker-test-env.sh (packages, the daemon, the base image); a daemon it
started is stopped at the end of the session. Skipped, with the reason, only where no Docker
daemon can run (not root, no apt-get). Each phase's duration is printed (``pytest -s``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ssftp.config import load_config
from ssftp.passwords import hash_password
from testkit.files import EICAR
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.repo import REPO
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

COMPOSE_FILE = REPO / "docker" / "compose.yaml"
ENV_SCRIPT = REPO / "scripts" / "docker-test-env.sh"
UNAVAILABLE = 3  # docker-test-env.sh: Docker cannot run here

PARTNER, PARTNER_PW = "partner-docker", "partner-docker-secret"
LATE, LATE_PW = "partner-late", "partner-late-secret"
ACCOUNT_DIR = "partner-docker"
SERVICES = ("postgres", "prefect-server", "clamd", "sftp", "worker")

BUILD_TIMEOUT = 900.0
UP_TIMEOUT = 300.0

# How long each phase took, printed at the end of the module (the figures of docs/docker.md).
PHASES: dict[str, float] = {}


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        PHASES[name] = round(time.monotonic() - started, 1)
        print(f"docker phase {name}: {PHASES[name]} s", flush=True)


def test_the_shipped_docker_config_is_valid_and_scans_with_the_clamd_service():
    loaded = load_config(REPO / "docker" / "config" / "ssftp.yaml")
    assert loaded.config.clamav.address == "clamd:3310"
    assert loaded.config.enable_virus_scan
    assert loaded.warnings == []


# --- Docker on this machine, once per session -------------------------------------------------


def compose_command() -> list[str]:
    """``docker compose`` (v2) where the plugin exists, else Debian's ``docker-compose``."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"]


def stop_daemon(pid: int) -> None:
    """Stop the dockerd the setup started (its containers are gone by then)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The compose command, with Docker ready (installed, a daemon, the base image)."""
    pid_file = tmp_path_factory.mktemp("dockerd") / "dockerd.pid"
    with phase("docker environment"):
        setup = subprocess.run([str(ENV_SCRIPT)], capture_output=True, text=True,
                               timeout=900, env={**os.environ,
                                                 "SSFTP_DOCKERD_PIDFILE": str(pid_file)})
    try:
        if setup.returncode == UNAVAILABLE:
            pytest.skip(f"Docker test: no Docker daemon can run here: {setup.stderr.strip()}")
        assert setup.returncode == 0, f"docker-test-env.sh failed:\n{setup.stderr}"
        yield compose_command()
    finally:
        if pid_file.exists():
            stop_daemon(int(pid_file.read_text()))


# --- the stack, once for the module -------------------------------------------------------------


@dataclass
class Stack:
    compose: list[str]  # the compose command with this stack's file, project and env file
    project: str
    env: dict[str, str]
    config_dir: Path
    sftp_port: int
    prefect_port: int
    postgres_password: str
    down: bool = field(default=False)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def run(self, *args: str, timeout: float = 300.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.compose, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                        f"{done.stderr[-3000:]}\n{self.logs()}")
        return done

    def in_sftp(self, *command: str) -> str:
        """Run ``command`` in the sftp container (it has the data volume at /mnt/ssftp)."""
        return self.run("exec", "-T", "sftp", *command, timeout=60).stdout

    @property
    def label(self) -> str:
        return f"com.docker.compose.project={self.project}"

    def containers(self, service: str | None = None) -> list[str]:
        labels = [self.label, *([f"com.docker.compose.service={service}"] if service else [])]
        return docker_ids("ps", "-a", labels=labels)

    def health(self, container: str) -> str:
        state = json.loads(docker_out("inspect", "--format", "{{json .State}}", container))
        return (state.get("Health") or {}).get("Status") or state["Status"]

    def logs(self, lines: int = 30) -> str:
        done = subprocess.run([*self.compose, "logs", "--no-color", "--tail", str(lines)],
                              capture_output=True, text=True, timeout=60, env=self.env)
        return "--- compose logs (end) ---\n" + done.stdout[-8000:]

    def leftovers(self) -> dict[str, list[str]]:
        return {"containers": docker_ids("ps", "-a", labels=[self.label]),
                "networks": docker_ids("network", "ls", labels=[self.label]),
                "volumes": docker_ids("volume", "ls", labels=[self.label])}


def docker_out(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def container_tail(container: str, lines: int = 40) -> str:
    """The end of a container's console, for a failure's message."""
    done = subprocess.run(["docker", "logs", "--tail", str(lines), container],
                          capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr)[-6000:]


def exit_code(container: str) -> int:
    return int(docker_out("inspect", "--format", "{{.State.ExitCode}}", container))


def docker_ids(*command: str, labels: list[str]) -> list[str]:
    """Ids that ``docker ps|network ls|volume ls`` lists with all of ``labels``."""
    filters = [word for label in labels for word in ("--filter", f"label={label}")]
    return docker_out(*command, *filters, "-q").split()


def stack_config(partner_hash: str) -> str:
    return f"""\
instanceName: ssftp-docker-test
fsyncUploads: false
clamav:
  address: clamd:3310
users:
  stagingDir:
    - directory: {ACCOUNT_DIR}
      auth:
        username: {PARTNER}
        password: "{partner_hash}"
"""


def free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def stack(docker: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("docker-stack")
    config_dir = root / "config"
    config_dir.mkdir()
    # The containers run as uid 10001 (ssftp): the mounted directory must be readable.
    config_dir.chmod(0o755)
    (config_dir / "ssftp.yaml").write_text(stack_config(hash_password(PARTNER_PW)))
    (config_dir / "ssftp.yaml").chmod(0o644)
    sftp_port, prefect_port = free_ports(2)
    env_file = root / ".env"
    password = secrets.token_hex(16)
    env_file.write_text(f"POSTGRES_PASSWORD={password}\n"
                        f"SSFTP_SFTP_PORT={sftp_port}\nSSFTP_PREFECT_PORT={prefect_port}\n"
                        f"SSFTP_BIND=127.0.0.1\nSSFTP_CONFIG_DIR={config_dir}\n")
    project = f"ssftp-test-{secrets.token_hex(4)}"
    # Nothing of the caller's own compose settings (its docker/.env, SSFTP_* variables).
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SSFTP_", "POSTGRES_", "CLAMAV_", "COMPOSE_"))}
    compose = [*docker, "--project-name", project, "--file", str(COMPOSE_FILE),
               "--env-file", str(env_file)]
    instance = Stack(compose, project, env, config_dir, sftp_port, prefect_port, password)
    try:
        yield instance
    finally:
        if not instance.down:
            instance.run("down", "--volumes", "--timeout", "20", timeout=180, check=False)
        print("docker phases: " + ", ".join(f"{k} {v} s" for k, v in PHASES.items()),
              flush=True)


@pytest.fixture(scope="module")
def running(stack: Stack) -> Stack:
    """The stack built (cold: whatever the cache holds; then warm: all cached) and up, every
    service healthy."""
    # docker-compose 1.29 builds one image after another unless told; v2 always in parallel.
    build = ["build", "--parallel"] if stack.compose[0] == "docker-compose" else ["build"]
    with phase("build"):
        # The three images, one service each (in parallel, three services of the one ssftp
        # image would build it three times over); then the other two of ssftp's, all cached.
        stack.run(*build, "postgres", "clamd", "prefect-server", timeout=BUILD_TIMEOUT)
        stack.run(*build, timeout=BUILD_TIMEOUT)
    with phase("build again (cached)"):
        stack.run(*build, timeout=BUILD_TIMEOUT)
    with phase("up -d until healthy"):
        stack.run("up", "-d", timeout=UP_TIMEOUT)
        wait_for("every service healthy", lambda: all_healthy(stack), UP_TIMEOUT,
                 lambda: health_table(stack) + stack.logs())
    return stack


def all_healthy(stack: Stack, services: tuple[str, ...] = SERVICES) -> bool:
    return all((ids := stack.containers(service)) and
               all(stack.health(container) == "healthy" for container in ids)
               for service in services)


def health_table(stack: Stack) -> str:
    return "\n".join(f"{service}: {[stack.health(c) for c in stack.containers(service)]}"
                     for service in SERVICES) + "\n"


# --- uploads and what became of them -------------------------------------------------------------


def upload(stack: Stack, client: Path, files: dict[str, bytes], user: str = PARTNER,
           password: str = PARTNER_PW) -> None:
    for name, data in files.items():
        (client / name).write_bytes(data)
    result = run_sftp(stack.sftp_port, user, [f'put "{name}"' for name in files], cwd=client,
                      password=password, timeout=120)
    assert result.returncode == 0, f"upload failed: {result.stdout}\n{result.stderr}"


def area_files(stack: Stack) -> set[str]:
    """Files in clean/ and quarantine/ of the data volume, relative to the data root."""
    found = stack.in_sftp("find", "/mnt/ssftp/clean", "/mnt/ssftp/quarantine", "-type", "f")
    return {line.removeprefix("/mnt/ssftp/") for line in found.splitlines() if line}


def audit_scans(stack: Stack) -> list[dict[str, Any]]:
    text = stack.in_sftp("sh", "-c", "cat /mnt/ssftp/log/audit.log 2>/dev/null || true")
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [event for event in events if event.get("event") == "scan"]


@dataclass(frozen=True)
class Uploaded:
    clean_bytes: bytes


@pytest.fixture(scope="module")
def uploaded(running: Stack, tmp_path_factory: pytest.TempPathFactory) -> Uploaded:
    clean_bytes = b"id,amount\n1,100\n" + os.urandom(64 * 1024)
    with phase("upload until both routed"):
        upload(running, tmp_path_factory.mktemp("docker-client"),
               {"report.csv": clean_bytes, "eicar.com": EICAR})
        wanted = {f"clean/{ACCOUNT_DIR}/report.csv", f"quarantine/{ACCOUNT_DIR}/eicar.com"}
        wait_for("report.csv in clean/ and eicar.com in quarantine/ of the data volume",
                 lambda: wanted <= area_files(running),
                 details=lambda: repr(area_files(running)) + running.logs())
    return Uploaded(clean_bytes)


def test_every_service_is_healthy_and_runs_as_intended(running):
    assert all_healthy(running), health_table(running)
    # The SFTP server and the worker are the non-root ssftp user; the API answers outside.
    assert running.in_sftp("id", "-un").strip() == "ssftp"
    assert httpx.get(f"{running.api}/health", timeout=10).is_success
    # Published on SSFTP_BIND (127.0.0.1) only.
    sftp = running.containers("sftp")[0]
    assert docker_out("port", sftp, "2002").split() == [f"127.0.0.1:{running.sftp_port}"]
    # A fresh database volume: clamd runs on the offline test signatures and says so (freshclam
    # runs beside it, where the network allows).
    clamd = running.run("logs", "--no-color", "clamd").stdout
    assert "no real signature database" in clamd, clamd[-2000:]


def test_eicar_is_quarantined_and_the_clean_file_is_clean(running, uploaded):
    files = area_files(running)
    assert f"clean/{ACCOUNT_DIR}/eicar.com" not in files
    assert f"quarantine/{ACCOUNT_DIR}/report.csv" not in files
    clean = running.in_sftp("sha256sum", f"/mnt/ssftp/clean/{ACCOUNT_DIR}/report.csv")
    assert clean.split()[0] == hashlib.sha256(uploaded.clean_bytes).hexdigest()
    verdict = json.loads(running.in_sftp(
        "cat", f"/mnt/ssftp/quarantine/{ACCOUNT_DIR}/eicar.com.verdict.json"))
    assert "EICAR" in json.dumps(verdict), verdict


def api_post(stack: Stack, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{stack.api}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def test_the_scan_runs_are_in_the_published_prefect_api(running, uploaded):
    """The worker's runs reach the Prefect server (on PostgreSQL) and its published port."""
    state: dict[str, Any] = {}

    def completed() -> set[str] | None:
        run_ids = {event["flow_run_id"] for event in audit_scans(running)}
        runs = api_post(running, "/flow_runs/filter", {"limit": 100})
        state["runs"] = [(run["name"], run["state_type"]) for run in runs]
        done = {run["id"] for run in runs
                if run["name"].startswith("scan") and run["state_type"] == "COMPLETED"}
        return run_ids if run_ids and run_ids <= done else None

    wait_for("the audit log's scan runs completed in the published Prefect API", completed,
             details=lambda: repr(state))
    settings = httpx.get(f"http://127.0.0.1:{running.prefect_port}/ui-settings", timeout=10)
    assert settings.json()["api_url"] == running.api
    # The runs are in PostgreSQL (a wrong database URL would fall back to SQLite silently).
    stored = running.run("exec", "-T", "postgres", "psql", "-U", "prefect", "-d", "prefect",
                         "-tAc", "select count(*) from flow_run where name like 'scan%'").stdout
    assert int(stored.strip()) >= 1, stored


def test_no_secret_is_baked_into_an_image(running):
    """POSTGRES_PASSWORD reaches the containers from the env file, never an image."""
    for image in ("ssftp:latest", "ssftp-postgres:latest", "ssftp-clamd:latest"):
        baked = docker_out("image", "inspect", image) + docker_out("history", "--no-trunc",
                                                                    image)
        assert running.postgres_password not in baked, image
    postgres = running.containers("postgres")[0]
    assert running.postgres_password in docker_out("inspect", postgres)


def test_the_prefect_ui_is_served_on_the_published_port(running):
    """The UI's files are written at start to a directory the server can write (as the
    non-root user, not into the installed package)."""
    page = httpx.get(f"http://127.0.0.1:{running.prefect_port}/", timeout=30)
    assert page.status_code == 200, page.text[:300]
    assert "<html" in page.text.lower(), page.text[:300]


def test_two_workers_share_the_data_root_and_each_file_is_scanned_once(
        running, uploaded, tmp_path):
    with phase("scale worker=2 until healthy"):
        running.run("up", "-d", "--scale", "worker=2", "--no-recreate", timeout=UP_TIMEOUT)
        wait_for("two healthy workers", lambda: len(running.containers("worker")) == 2 and
                 all_healthy(running, ("worker",)), UP_TIMEOUT, lambda: health_table(running))
    names = {f"batch-{index}.txt": os.urandom(4096) for index in range(12)}
    upload(running, tmp_path, names)
    wanted = {f"clean/{ACCOUNT_DIR}/{name}" for name in names}
    wait_for("the 12 files in clean/", lambda: wanted <= area_files(running),
             details=lambda: repr(area_files(running)) + running.logs())
    files = {f"{ACCOUNT_DIR}/{name}" for name in names}
    scans: dict[str, int] = {}
    for event in audit_scans(running):
        scans[event["file"]] = scans.get(event["file"], 0) + 1
    assert {file: 1 for file in files}.items() <= scans.items(), scans
    # Each file's scan record is on one worker's console only: one claim, one scan.
    by_worker = {worker: console_scans(worker) & files
                 for worker in running.containers("worker")}
    for file in files:
        scanned_by = [worker for worker, seen in by_worker.items() if file in seen]
        assert len(scanned_by) == 1, (file, by_worker)
    print("files scanned per worker: " + repr(sorted(len(seen) for seen in by_worker.values())))
    # Each scans: with the one that scanned most stopped, the other scans the next file.
    busiest = max(by_worker, key=lambda worker: len(by_worker[worker]))
    docker_out("stop", busiest)
    upload(running, tmp_path, {"after-stop.txt": b"scanned by the other worker\n"})
    other = next(worker for worker in by_worker if worker != busiest)
    wait_for("the other worker scanning after-stop.txt",
             lambda: f"{ACCOUNT_DIR}/after-stop.txt" in console_scans(other),
             details=running.logs)


def console_scans(container: str) -> set[str]:
    """The files whose scan record a container printed (its console is JSON lines)."""
    lines = subprocess.run(["docker", "logs", container], capture_output=True, text=True,
                           timeout=60).stdout.splitlines()
    files = set()
    for line in lines:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "scan":
                files.add(event["file"])
    return files


def test_an_edit_of_the_mounted_config_reloads_it(running, uploaded, tmp_path):
    """A new account in docker's ssftp.yaml can log in, with no restart."""
    config = running.config_dir / "ssftp.yaml"
    config.write_text(config.read_text() + f"""\
    - directory: {LATE}
      auth:
        username: {LATE}
        password: "{hash_password(LATE_PW)}"
""")

    def logs_in() -> bool:
        (tmp_path / "hello.txt").write_text("hello\n")
        return run_sftp(running.sftp_port, LATE, ["put hello.txt"], cwd=tmp_path,
                        password=LATE_PW, timeout=60).returncode == 0

    wait_for(f"{LATE} logging in after the config edit", logs_in, details=running.logs)
    wait_for("hello.txt of the new account in clean/",
             lambda: f"clean/{LATE}/hello.txt" in area_files(running), details=running.logs)


def test_stop_is_clean_within_dockers_10_seconds_and_down_leaves_nothing(running, uploaded):
    """``stop -t 10``: a service still running after 10 s is SIGKILLed (exit 137)."""
    containers = {service: running.containers(service) for service in SERVICES}
    with phase("stop -t 10"):
        running.run("stop", "--timeout", "10", timeout=120)
    exits = {service: [exit_code(container) for container in ids]
             for service, ids in containers.items()}
    unclean = "".join(f"\n--- {container} exited {exit_code(container)} ---\n"
                      + container_tail(container)
                      for ids in containers.values() for container in ids
                      if exit_code(container) not in (0, 143))
    assert all(code != 137 for codes in exits.values() for code in codes), (exits, unclean)
    # ssftp's own stop is a clean one: exit 0.
    assert exits["sftp"] == [0] and exits["worker"] == [0, 0], (exits, unclean)
    with phase("down -v"):
        running.run("down", "--volumes", timeout=180)
    running.down = True
    assert running.leftovers() == {"containers": [], "networks": [], "volumes": []}
