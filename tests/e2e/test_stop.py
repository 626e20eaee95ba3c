"""A clean stop, always (issue 13, item 5): ``ssftp up`` stopped by Ctrl-C right after a
webhook delivery exits in time with status 0 and leaves nothing running, ten times in a row;
and a stop that hangs anyway is ended by its deadline, saying what was still running.

The rounds share one data root (the Prefect database migrates once) and one webhook receiver.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from testkit.files import EICAR
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.config import write_config
from tests.support.repo import REPO
from tests.support.up import (
    ACCOUNT_DIR,
    PARTNER,
    PARTNER_PW,
    Up,
    launch_up,
    shut_down,
    up_config,
    wait_until_up,
)
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver
from tests.support.worker import Ssftp, outage_config

ROUNDS = 10
# How long ``up`` may take to stop; a stop forced at that bound exits 2, not 0.
STOP_SECONDS = 15.0

HANGS = """
import threading
from ssftp.runtime.stop import StopDeadline
deadline = StopDeadline(seconds=0.5)
deadline.arm("waiting for something that never comes")
threading.Thread(target=threading.Event().wait, name="stuck-flush").start()
"""


def test_a_stop_past_its_deadline_is_forced_and_says_what_still_ran():
    """A non-daemon thread that never ends would keep the interpreter in its exit forever."""
    result = subprocess.run([sys.executable, "-c", HANGS], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "waiting for something that never comes" in result.stderr
    assert "stuck-flush" in result.stderr
    assert "forced" in result.stderr


def stop_after_a_webhook(root: Path, config: Path, data: Path, prefect_port: int,
                         receiver: WebhookReceiver, name: str) -> float:
    """One round: start, upload EICAR as ``name``, wait for its webhook, Ctrl-C at once; the
    seconds the stop took."""
    up = launch_up(root, config, data, free_port(), prefect_port)
    try:
        wait_until_up(up)
        put = run_sftp(up.sftp_port, PARTNER, [f"put eicar.com {name}"], cwd=root,
                       password=PARTNER_PW, timeout=120)
        assert put.returncode == 0, put.stdout + put.stderr
        wait_for(f"the virusFound webhook of {name}", lambda: receiver.received("/found", name),
                 details=up.tail)
        began = time.monotonic()
        code = up.interrupt(timeout=STOP_SECONDS)
        took = time.monotonic() - began
        assert code == 0, f"{name}: exit status {code} ({took:.1f} s)\n{up.tail()}"
        wait_for("no process of this instance left", lambda: not up.leftovers(), timeout=15,
                 details=lambda: "\n".join(f"{p.pid}: {p.cmdline}" for p in up.leftovers()))
        assert (data / "quarantine" / ACCOUNT_DIR / name).read_bytes() == EICAR
        return took
    finally:
        shut_down(up)


def test_up_stops_cleanly_right_after_a_webhook_ten_times_in_a_row(tmp_path):
    receiver = WebhookReceiver()
    config = write_config(tmp_path / "ssftp.yaml", up_config() + f"""
    webhooks:
      - name: virusFound
        url: {receiver.url}/found
        retries: 0
    """)
    (tmp_path / "eicar.com").write_bytes(EICAR)
    prefect_port = free_port()
    try:
        stops = [stop_after_a_webhook(tmp_path, config, tmp_path / "data", prefect_port,
                                      receiver, f"eicar-{round_number}.com")
                 for round_number in range(ROUNDS)]
    finally:
        receiver.stop()
    print(f"{ROUNDS} stops: longest {max(stops):.1f} s, mean {sum(stops) / len(stops):.1f} s")


def files_in(directory: Path) -> set[str]:
    return {path.name for path in directory.rglob("*") if path.is_file()
            and not path.name.endswith(".verdict.json")}


def test_an_instance_on_another_ones_prefect_server_outlives_its_restart(tmp_path):
    """B uses A's Prefect server (``--prefect-url``). A is stopped, and restarted on the same
    port and data root, while B has files to scan: every file ends in B's clean/ or
    quarantine/, every virusFound webhook arrives, and both stop cleanly."""
    receiver = WebhookReceiver()
    config = write_config(tmp_path / "ssftp.yaml", up_config() + f"""
    webhooks:
      - name: virusFound
        url: {receiver.url}/found
    """)
    client = tmp_path / "client"
    client.mkdir()
    sent = set()
    for number in range(6):
        (client / f"clean-{number}.txt").write_bytes(b"fine %d\n" % number)
        (client / f"eicar-{number}.com").write_bytes(EICAR)
        sent |= {f"clean-{number}.txt", f"eicar-{number}.com"}
    prefect_port = free_port()
    a = launch_up(tmp_path, config, tmp_path / "a-data", free_port(), prefect_port)
    b = None
    try:
        wait_until_up(a)
        b = launch_up(tmp_path, config, tmp_path / "b-data", free_port(), free_port(),
                      prefect_url=a.api)
        wait_until_up(b)
        upload(b, client, ["clean-0.txt", "eicar-0.com"])
        assert a.interrupt() == 0, a.tail()
        # While A's server is gone, and as it comes back.
        upload(b, client, ["clean-1.txt", "eicar-1.com", "clean-2.txt", "eicar-2.com"])
        a = launch_up(tmp_path, config, tmp_path / "a-data", free_port(), prefect_port)
        upload(b, client, ["clean-3.txt", "eicar-3.com"])
        wait_until_up(a)
        upload(b, client, ["clean-4.txt", "eicar-4.com", "clean-5.txt", "eicar-5.com"])
        area = b.data
        wait_for("every file in B's clean/ or quarantine/",
                 lambda: files_in(area / "clean") | files_in(area / "quarantine")
                 == sent, timeout=180, details=b.tail)
        assert files_in(area / "quarantine") == {f"eicar-{n}.com" for n in range(6)}
        assert files_in(area / "staging") == set()
        wait_for("a virusFound webhook for each EICAR",
                 lambda: all(receiver.received("/found", f"eicar-{n}.com") for n in range(6)),
                 timeout=180, details=b.tail)
        assert b.interrupt() == 0, b.tail()
        assert a.interrupt() == 0, a.tail()
    finally:
        for instance in (b, a):
            if instance is not None:
                shut_down(instance)
        receiver.stop()


def upload(instance: Up, client: Path, names: list[str]) -> None:
    put = run_sftp(instance.sftp_port, PARTNER, [f"put {name}" for name in names], cwd=client,
                   password=PARTNER_PW, timeout=120)
    assert put.returncode == 0, put.stdout + put.stderr


class StallingClamd:
    """A clamd on a Unix socket that answers PING and never answers a scan: a scan run stays
    in progress for as long as the test wants."""

    def __init__(self, path: Path) -> None:
        self.scans = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(path))
        self._listener.listen()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            command = conn.recv(4096)
            if b"PING" in command:
                conn.sendall(b"PONG\0")
                conn.close()
            else:
                self._held.append(conn)  # read, never answered
                self.scans.set()

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


def test_a_sigterm_during_a_scan_run_stops_the_worker_cleanly(tmp_path: Path, prefect_api: str):
    """``docker stop`` sends SIGTERM, often while a scan run is in progress. Prefect's flow
    engine takes SIGTERM over while a flow runs on the main thread (its handler raises
    TerminationSignal): on main, ``ssftp worker`` then died with exit 1 and a traceback."""
    clamd = StallingClamd(tmp_path / "clamd.sock")
    receiver = WebhookReceiver()
    config = outage_config(tmp_path, tmp_path / "clamd.sock", receiver, timeout=3)
    data = tmp_path / "data"
    worker = Ssftp(tmp_path, config, data, prefect_api, "worker")
    try:
        wait_for("the worker to start", lambda: worker.events("scan worker started")
                 or worker.proc.poll() is not None)
        staged = data / "staging" / "drop" / "x.txt"
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(b"scanned while the worker is stopped\n")
        assert clamd.scans.wait(60), worker.output()
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(timeout=STOP_SECONDS + 10)
    finally:
        worker.stop()
        clamd.close()
        receiver.stop()
    assert code == 0, f"exit status {code} after SIGTERM\n{worker.output()}"
    assert "Traceback" not in worker.stderr.read_text(), worker.output()
