"""``ssftp up`` as a user runs it, in its own session (so Ctrl-C goes to its whole group): start
it, wait until it says it is up, upload as its partner, stop it and make sure nothing it
started is left; and the processes it started, read from /proc (psutil is not installed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testkit.files import EICAR, EICAR_MARKER
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.cli import SSFTP, child_env
from tests.support.waiting import wait_for

PARTNER, PARTNER_PW = "partner-up", "partner-up-secret"
CONSUMER, CONSUMER_PW = "consumer-up", "consumer-up-secret"
ACCOUNT_DIR = "partner-up"
SUB_DIR = "in box"
CLEAN_NAME = "report 1.csv"

START_TIMEOUT = 120.0  # the first Prefect start migrates its SQLite database
STOP_TIMEOUT = 60.0


# --- processes, from /proc (psutil is not installed) ------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks since boot: tells a pid apart from a later reuse of it
    cmdline: str
    environ: dict[str, str]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def _read_proc(pid: int) -> Proc | None:
    stat = _stat(pid)
    if stat is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        raw_env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    environ = {}
    for item in raw_env.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            environ[key] = value
    return Proc(pid, stat[2], cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
                environ)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def descendants(root: int) -> list[Proc]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        if (stat := _stat(pid)) is not None:
            children.setdefault(stat[1], []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if (proc := _read_proc(pid)) is not None:
            found.append(proc)
        todo += children.get(pid, [])
    return found


def is_alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[2] == proc.start and stat[0] != "Z"


def processes_mentioning(text: str) -> list[Proc]:
    """Live processes (not this one) whose command line or environment contains ``text``."""
    found = []
    for pid in _pids():
        if pid == os.getpid() or (proc := _read_proc(pid)) is None or not is_alive(proc):
            continue
        if text in proc.cmdline or any(text in value for value in proc.environ.values()):
            found.append(proc)
    return found


def stop_process(proc: Proc) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 20
    while is_alive(proc) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_alive(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


# --- ssftp up, once for the module ------------------------------------------------------------


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    root: Path
    data: Path
    stdout_path: Path
    stderr_path: Path
    sftp_port: int
    prefect_port: int
    children: list[Proc]  # what `up` had started once it said it was up

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        out = self.stdout.splitlines()[-lines:]
        err = self.stderr_path.read_text(errors="replace").splitlines()[-lines:]
        return "--- ssftp up stdout (end) ---\n" + "\n".join(out) + \
            "\n--- ssftp up stderr (end) ---\n" + "\n".join(err)

    def leftovers(self) -> list[Proc]:
        """Processes still running that this instance started, or that name its data root
        (its Prefect server's PREFECT_HOME, its clamd.conf): never anyone else's."""
        found = {proc.pid: proc for proc in self.children if is_alive(proc)}
        for proc in processes_mentioning(str(self.data)):
            found.setdefault(proc.pid, proc)
        return [proc for proc in found.values() if proc.pid != self.proc.pid]

    def interrupt(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ctrl-C as a terminal sends it (to the process group); the exit code, or None when
        it has not exited within ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def up_config() -> str:
    # sftpPort 0 here: the port the test passes with --port must win.
    return f"""
    sftpPort: 0
    fsyncUploads: false
    users:
      stagingDir:
        - directory: {ACCOUNT_DIR}
          auth:
            username: {PARTNER}
            password: {PARTNER_PW}
      cleanDir:
        - directory: {ACCOUNT_DIR}
          auth:
            username: {CONSUMER}
            password: {CONSUMER_PW}
    """


def launch_up(root: Path, config: Path, data: Path, sftp_port: int,
              prefect_port: int, env: dict[str, str] | None = None, command: str = SSFTP,
              prefect_url: str | None = None) -> Up:
    """Start ``ssftp up`` in its own session (so Ctrl-C can go to its group), output to files;
    by default with no Prefect server named, so it starts one on ``prefect_port``; with
    ``prefect_url``, it uses that one (``--prefect-url``, another instance's ``Up.api``).
    ``command`` is the ``ssftp`` console script to run (default: this checkout's)."""
    stdout_path, stderr_path = data.with_name(data.name + ".stdout"), \
        data.with_name(data.name + ".stderr")
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [command, "up", "--config", str(config), "--data-dir", str(data),
             "--port", str(sftp_port), "--prefect-port", str(prefect_port),
             *(["--prefect-url", prefect_url] if prefect_url else [])],
            cwd=root, env=env if env is not None else child_env(), stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True)
    return Up(proc, root, data, stdout_path, stderr_path, sftp_port, prefect_port, [])


def wait_until_up(instance: Up) -> None:
    def started() -> bool:
        if instance.proc.poll() is not None:
            pytest.fail(f"ssftp up exited with {instance.proc.returncode} before it was up\n"
                        f"{instance.tail()}")
        return "ssftp is up." in instance.stdout

    wait_for("ssftp up printing 'ssftp is up.'", started, START_TIMEOUT, instance.tail)
    instance.children = descendants(instance.proc.pid)


@contextlib.contextmanager
def up_for_module(root: Path, env: dict[str, str] | None = None) -> Iterator[Up]:
    """A module's ``ssftp up`` with :func:`up_config`'s accounts on free ports, up until the
    block ends (``env``: its environment, default :func:`child_env`)."""
    config = root / "ssftp.yaml"
    config.write_text(textwrap.dedent(up_config()))
    instance = launch_up(root, config, root / "data", free_port(), free_port(), env=env)
    try:
        wait_until_up(instance)
        yield instance
    finally:
        shut_down(instance)


def shut_down(instance: Up) -> None:
    """Teardown: Ctrl-C, then SIGKILL to the group; then anything left that is its own."""
    if instance.interrupt() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(instance.proc.pid, signal.SIGKILL)
        instance.proc.wait(timeout=30)
    for leftover in instance.leftovers():
        stop_process(leftover)


@dataclass(frozen=True)
class Uploaded:
    client: Path
    clean_bytes: bytes
    clean_file: Path  # where the clean file must end up
    quarantined: Path  # where EICAR must end up
    sftp: str  # output of the upload


def upload_samples(up: Up, client: Path) -> Uploaded:
    """Upload, from the directory ``client``, a normal file and EICAR as the partner does."""
    clean_bytes = b"id,amount\n1,100\n" + os.urandom(64 * 1024)
    (client / "report.csv").write_bytes(clean_bytes)
    (client / "eicar.com").write_bytes(EICAR)
    result = run_sftp(up.sftp_port, PARTNER,
                      [f'mkdir "{SUB_DIR}"', f'put report.csv "{SUB_DIR}/{CLEAN_NAME}"',
                       "put eicar.com"],
                      cwd=client, password=PARTNER_PW, timeout=120)
    assert result.returncode == 0, f"upload failed: {result.stdout}\n{result.stderr}"
    return Uploaded(client, clean_bytes,
                    up.data / "clean" / ACCOUNT_DIR / SUB_DIR / CLEAN_NAME,
                    up.data / "quarantine" / ACCOUNT_DIR / "eicar.com",
                    result.stdout)


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def eicar_in(directory: Path) -> list[Path]:
    """Every file below ``directory`` named like EICAR or holding its bytes."""
    return [path for path in files_under(directory)
            if "eicar" in path.name.lower() or EICAR_MARKER in path.read_bytes()]


def verdict_record(quarantined: Path) -> dict[str, Any] | None:
    """The verdict record beside a quarantined file, once it is complete."""
    try:
        return json.loads(quarantined.with_name(quarantined.name + ".verdict.json").read_text())
    except (OSError, ValueError):
        return None


def wait_until_scanned(up: Up, uploaded: Uploaded) -> None:
    def arrived() -> bool:
        assert not eicar_in(up.data / "clean"), "EICAR reached clean/"
        return (uploaded.clean_file.is_file()
                and uploaded.clean_file.read_bytes() == uploaded.clean_bytes
                and uploaded.quarantined.is_file()
                and verdict_record(uploaded.quarantined) is not None)

    wait_for("the clean file in clean/ and EICAR with its verdict in quarantine/", arrived,
             details=lambda: "\n".join(map(str, files_under(up.data))) + "\n" + up.tail())
