"""A clamd outage, with real parts: a clamd address with nothing behind it (a socket path that
does not exist yet), a real ``ssftp worker`` on Prefect's test server, a real webhook receiver,
and then a real clamd started on that path.

What it must show: the worker warns at start that the address does not answer and keeps
running; a waiting file is not tried again and again (one attempt, one audit record and one
scanError webhook per file for the whole outage, while the worker probes clamd with PING on the
backoff schedule); one log line when the outage starts and one ``scan resumed`` line when
clamd answers, after which the files are scanned and moved on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.scan import SCAN_THREADS
from ssftp.addresses import ClamdAddress
from ssftp.runtime.clamd_daemon import TEST_SIGNATURES, ClamdDaemon, socket_in
from ssftp.scan.clamd import ClamdClient, VerdictKind
from testkit.openssh_server import free_port
from tests.support import WebhookReceiver, wait_for, write_config

SSFTP = str(Path(sys.executable).with_name("ssftp"))
# Long enough for per-file retries to show (main made ~15 attempts of each file in 20 s here;
# backoff from 1 s capped at 4 s alone would make seven), short enough to keep the test quick.
OUTAGE_SECONDS = 20.0
STOP_TIMEOUT = 60.0


# --- the client: a clamd that is not there is told apart from a file clamd could not scan ----


@pytest.mark.parametrize("address", ["socket", "port"])
def test_an_address_with_nothing_behind_it_is_unreachable(tmp_path: Path, address: str) -> None:
    target = (ClamdAddress(unix_path=str(tmp_path / "no-clamd.sock")) if address == "socket"
              else ClamdAddress(host="127.0.0.1", port=free_port()))
    staged = tmp_path / "f.txt"
    staged.write_bytes(b"data\n")
    client = ClamdClient(target, timeout=5)
    assert client.ping() is False
    for mode in ("path", "fd", "stream"):
        verdict = client.scan(staged, mode)
        assert verdict.kind is VerdictKind.ERROR
        assert verdict.unreachable, (mode, verdict)


def test_a_file_clamd_answered_about_is_not_an_outage(clamd: ClamdDaemon,
                                                      tmp_path: Path) -> None:
    staged = tmp_path / "f.txt"
    staged.write_bytes(b"data\n")
    client = ClamdClient(clamd.address, timeout=30)
    assert client.ping() is True
    assert client.scan(staged, "fd").unreachable is False
    # clamd answers ERROR for a path it cannot open: an error about the file, not an outage.
    missing = client.scan(tmp_path / "not-there.txt", "path")
    assert missing.kind is VerdictKind.ERROR
    assert missing.unreachable is False


def test_a_hung_clamd_costs_one_timeout_then_scans_fail_at_once_until_it_answers_ping(
        tmp_path: Path) -> None:
    """clamd stopped with SIGSTOP (a clamd of this test's own; the session's is shared):
    connections are accepted by the kernel and nothing answers. On main every scan waited out
    its own full timeout; now the first one's timeout is followed by a PING, unanswered, and
    the scans after it fail at once as an outage until a PING is answered again."""
    clamd = ClamdDaemon.start(tmp_path / "clamd", database=TEST_SIGNATURES)
    staged = tmp_path / "f.txt"
    staged.write_bytes(b"data\n")
    client = ClamdClient(clamd.address, timeout=0.5)
    try:
        clamd.process.send_signal(signal.SIGSTOP)
        try:
            first = client.scan(staged, "fd")
            assert first.kind is VerdictKind.ERROR
            assert first.timed_out and first.unreachable, first
            second = client.scan(staged, "stream")
            assert second.kind is VerdictKind.ERROR
            assert second.unreachable and not second.timed_out, second
        finally:
            clamd.process.send_signal(signal.SIGCONT)
        assert client.ping() is True
        assert client.scan(staged, "fd").kind is VerdictKind.CLEAN
    finally:
        clamd.stop()


# --- end to end: ssftp worker through an outage ----------------------------------------------


def outage_config(directory: Path, clamd: Path | str, receiver: WebhookReceiver, *,
                  timeout: float = 120, retry_initial: float = 1, retry_max: float = 4) -> Path:
    return write_config(directory / "ssftp.yaml", f"""
    clamav:
      address: "{clamd}"
      timeout: {timeout:g}
    scanning:
      stableSeconds: 0.1
      retryInitialSeconds: {retry_initial:g}
      retryMaxSeconds: {retry_max:g}
    webhooks:
      - name: scanError
        url: {receiver.url}/hook
        retries: 0
    users:
      stagingDir:
        - directory: drop
          auth: {{username: dropper, password: dropper-pw}}
    """)


class Ssftp:
    """``ssftp <command>`` in a subprocess on Prefect's test server, its stdout and stderr in
    files."""

    def __init__(self, directory: Path, config: Path, data: Path, api_url: str,
                 *command: str) -> None:
        self.stdout, self.stderr = directory / "ssftp.out", directory / "ssftp.err"
        self.data = data
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PREFECT_")}
        env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(directory / "prefect-home"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [SSFTP, *command, "--config", str(config), "--data-dir", str(data)],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def output(self) -> str:
        return (self.stdout.read_text(errors="replace")[-4000:] + "\n--- stderr\n"
                + self.stderr.read_text(errors="replace")[-4000:])

    def events(self, name: str) -> list[dict[str, object]]:
        log = self.data / "log" / "ssftp.log"
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [entry for entry in entries if entry.get("event") == name]

    def audit(self, file: str) -> list[dict[str, object]]:
        log = self.data / "log" / "audit.log"
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [entry for entry in entries
                if entry.get("event") == "scan" and entry.get("file") == file]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    yield hooks
    hooks.stop()


def test_an_outage_is_one_attempt_and_one_scan_error_per_file_then_scanning_resumes(
        tmp_path: Path, prefect_api: str, receiver: WebhookReceiver) -> None:
    clamd_dir = tmp_path / "clamd"
    clamd_socket = socket_in(clamd_dir)  # nothing there until the outage ends
    data = tmp_path / "data"
    (data / "staging" / "drop").mkdir(parents=True)
    names = ["first.txt", "second.txt"]
    worker = Ssftp(tmp_path, outage_config(tmp_path, clamd_socket, receiver), data,
                   prefect_api, "worker")
    clamd = None
    try:
        wait_for(lambda: worker.events("scan worker started") or worker.proc.poll() is not None,
                 "the worker to start")
        assert worker.proc.poll() is None, worker.output()
        for name in names:
            (data / "staging" / "drop" / name).write_bytes(b"waiting for clamd\n")
        wait_for(lambda: all(receiver.received("/hook", name) for name in names),
                 "a scanError webhook for each file")
        time.sleep(OUTAGE_SECONDS)

        for name in names:
            attempts = worker.audit(f"drop/{name}")
            # One attempt for the whole outage: clamd is probed (PING), not the files.
            assert len(attempts) == 1, (name, len(attempts))
            assert all(record["verdict"] == "error" for record in attempts)
            assert len(receiver.received("/hook", name)) == 1, name
        # The start check: a warning naming the address, on stderr and in the log.
        assert f"clamd at {clamd_socket} does not answer" in worker.stderr.read_text(), \
            worker.output()
        (warning,) = worker.events("clamd does not answer")
        assert warning["address"] == str(clamd_socket)
        (started,) = worker.events("clamd does not answer; scanning waits for it")
        assert started["address"] == str(clamd_socket)
        assert worker.events("scan resumed") == []
        assert (data / "staging" / "drop" / names[0]).is_file()

        clamd = ClamdDaemon.start(clamd_dir, database=TEST_SIGNATURES)
        wait_for(lambda: all((data / "clean" / "drop" / name).is_file() for name in names),
                 "both files in clean/ once clamd answers")
        (resumed,) = worker.events("scan resumed")
        assert resumed["files"] == len(names)
        assert resumed["seconds"] >= OUTAGE_SECONDS
        for name in names:
            assert worker.audit(f"drop/{name}")[-1]["verdict"] == "clean"
            assert len(receiver.received("/hook", name)) == 1, name
    finally:
        code = worker.stop()
        if clamd is not None:
            clamd.stop()
    assert code == 0, f"worker exit status {code} after SIGINT\n{worker.output()}"


def test_up_warns_at_start_that_its_clamd_address_does_not_answer_and_runs_on(
        tmp_path: Path, prefect_api: str, receiver: WebhookReceiver) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    data = tmp_path / "data"
    config = outage_config(tmp_path, address, receiver)
    up = Ssftp(tmp_path, config, data, prefect_api, "up", "--host", "127.0.0.1",
               "--port", str(free_port()))
    try:
        wait_for(lambda: "ssftp is up." in up.stdout.read_text() or up.proc.poll() is not None,
                 "ssftp up to be up")
        assert up.proc.poll() is None, up.output()
        assert f"clamd at tcp://{address} does not answer" in up.stderr.read_text(), \
            up.output()
        (warning,) = up.events("clamd does not answer")
        assert warning["address"] == f"tcp://{address}"
    finally:
        code = up.stop()
    assert code == 0, f"ssftp up exit status {code} after SIGINT\n{up.output()}"


HUNG_FILES = 12
# Long enough for the retries of main to show (its backoff here is 0.5 s, then 1 s).
HUNG_SECONDS = 3.0


def test_a_hung_clamd_is_logged_and_waited_for_not_timed_out_file_by_file(
        tmp_path: Path, prefect_api: str, receiver: WebhookReceiver) -> None:
    """The issue's clamd stopped with SIGSTOP (a clamd of this test's own: the session's is
    shared) wrote no log line, and every attempt of every file waited out the whole
    ``clamav.timeout``. Now each scan that times out is one log line (clamd's address, the
    file by its data-root name, the seconds); as clamd does not answer PING either, that is
    an outage: the scans still queued do not wait out timeouts of their own (at most one per
    scan thread times out), every file is back in staging after one failed attempt, and all
    are scanned once clamd is CONTinued and answers PING."""
    clamd = ClamdDaemon.start(tmp_path / "clamd", database=TEST_SIGNATURES)
    data = tmp_path / "data"
    staging = data / "staging" / "drop"
    staging.mkdir(parents=True)
    config = outage_config(tmp_path, clamd.socket, receiver, timeout=1, retry_initial=0.5,
                           retry_max=1)
    names = [f"hung-{number:02}.txt" for number in range(HUNG_FILES)]
    worker = Ssftp(tmp_path, config, data, prefect_api, "worker")
    try:
        wait_for(lambda: worker.events("scan worker started") or worker.proc.poll() is not None,
                 "the worker to start")
        assert worker.proc.poll() is None, worker.output()
        clamd.process.send_signal(signal.SIGSTOP)
        try:
            for name in names:
                temp = staging / f".ssftp-tmp-{name}"
                temp.write_bytes(b"scanned once clamd wakes up\n")
                temp.rename(staging / name)
            wait_for(lambda: all(worker.audit(f"drop/{name}") for name in names),
                     "a failed attempt of each file")
            time.sleep(HUNG_SECONDS)
            timeouts = worker.events("clamd scan timed out")
            assert 1 <= len(timeouts) <= SCAN_THREADS, timeouts
            for line in timeouts:
                assert line["address"] == str(clamd.socket)
                assert line["seconds"] == 1
                assert line["file"] in {f"staging/drop/{name}" for name in names}
            for name in names:
                assert [r["verdict"] for r in worker.audit(f"drop/{name}")] == ["error"], name
                assert (staging / name).is_file()
            (outage,) = worker.events("clamd does not answer; scanning waits for it")
            assert outage["address"] == str(clamd.socket)
        finally:
            clamd.process.send_signal(signal.SIGCONT)
        wait_for(lambda: all((data / "clean" / "drop" / name).is_file() for name in names),
                 "every file in clean/ once clamd answers")
        for name in names:
            assert [r["verdict"] for r in worker.audit(f"drop/{name}")] == ["error", "clean"]
        (resumed,) = worker.events("scan resumed")
        assert resumed["files"] == HUNG_FILES
    finally:
        code = worker.stop()
        clamd.stop()
    assert code == 0, f"worker exit status {code} after SIGINT\n{worker.output()}"
