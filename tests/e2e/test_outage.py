"""A clamd outage, with real parts: a clamd address with nothing behind it (a socket path that
does not exist yet), a real ``ssftp worker`` on Prefect's test server, a real webhook receiver,
and then a real clamd started on that path.

What it must show: the worker warns at start that the address does not answer and keeps
running; a waiting file is not tried again and again (one attempt, one audit record and one
scanError webhook per file for the whole outage, while the worker probes clamd with PING on the
backoff schedule); one log line when the outage starts and one ``scan resumed`` line when
clamd answers, after which the files are scanned and moved on. How the client tells an outage
from a file clamd could not scan is in tests/unit/test_scan_clamd.py and
tests/integration/test_scan_clamd.py."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from flows.scan import SCAN_THREADS
from ssftp.runtime.clamd_daemon import ClamdDaemon, socket_in
from ssftp.scan.database import TEST_SIGNATURES
from testkit.openssh_server import free_port
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver
from tests.support.worker import Ssftp, outage_config

# Long enough for per-file retries to show (main made ~15 attempts of each file in 20 s here;
# backoff from 1 s capped at 4 s alone would make seven), short enough to keep the test quick.
OUTAGE_SECONDS = 20.0


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
        wait_for("the worker to start",
                 lambda: worker.events("scan worker started") or worker.proc.poll() is not None)
        assert worker.proc.poll() is None, worker.output()
        for name in names:
            (data / "staging" / "drop" / name).write_bytes(b"waiting for clamd\n")
        wait_for("a scanError webhook for each file",
                 lambda: all(receiver.received("/hook", name) for name in names))
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
        (warning,) = worker.events("engine does not answer")
        assert warning["engine"] == f"clamd at {clamd_socket}"
        (started,) = worker.events("scanning does not answer; it waits for it")
        assert started["engines"] == f"clamd at {clamd_socket}"
        assert worker.events("scan resumed") == []
        assert (data / "staging" / "drop" / names[0]).is_file()

        clamd = ClamdDaemon.start(clamd_dir, database=TEST_SIGNATURES)
        wait_for("both files in clean/ once clamd answers",
                 lambda: all((data / "clean" / "drop" / name).is_file() for name in names))
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
        wait_for("ssftp up to be up",
                 lambda: "ssftp is up." in up.stdout.read_text() or up.proc.poll() is not None)
        assert up.proc.poll() is None, up.output()
        assert f"clamd at tcp://{address} does not answer" in up.stderr.read_text(), \
            up.output()
        (warning,) = up.events("engine does not answer")
        assert warning["engine"] == f"clamd at tcp://{address}"
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
        wait_for("the worker to start",
                 lambda: worker.events("scan worker started") or worker.proc.poll() is not None)
        assert worker.proc.poll() is None, worker.output()
        clamd.process.send_signal(signal.SIGSTOP)
        try:
            for name in names:
                temp = staging / f".ssftp-tmp-{name}"
                temp.write_bytes(b"scanned once clamd wakes up\n")
                temp.rename(staging / name)
            wait_for("a failed attempt of each file",
                     lambda: all(worker.audit(f"drop/{name}") for name in names))
            time.sleep(HUNG_SECONDS)
            timeouts = worker.events("scan timed out")
            assert 1 <= len(timeouts) <= SCAN_THREADS, timeouts
            for line in timeouts:
                assert line["detail"].startswith(f"clamd at {clamd.socket} timed out after 1 s")
                assert line["file"] in {f"staging/drop/{name}" for name in names}
            for name in names:
                assert [r["verdict"] for r in worker.audit(f"drop/{name}")] == ["error"], name
                assert (staging / name).is_file()
            # Said once the failed run has ended, which a busy machine may take beyond the
            # sleep: the audit records are written before the run reports to Prefect.
            wait_for("the outage's line", lambda: worker.events(
                "scanning does not answer; it waits for it"))
            (outage,) = worker.events("scanning does not answer; it waits for it")
            assert outage["engines"] == f"clamd at {clamd.socket}"
        finally:
            clamd.process.send_signal(signal.SIGCONT)
        wait_for("every file in clean/ once clamd answers",
                 lambda: all((data / "clean" / "drop" / name).is_file() for name in names))
        for name in names:
            assert [r["verdict"] for r in worker.audit(f"drop/{name}")] == ["error", "clean"]
        (resumed,) = worker.events("scan resumed")
        assert resumed["files"] == HUNG_FILES
    finally:
        code = worker.stop()
        clamd.stop()
    assert code == 0, f"worker exit status {code} after SIGINT\n{worker.output()}"
