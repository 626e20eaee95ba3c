"""The ``ssftp.file.waiting`` event of a real ``ssftp worker`` whose clamd fails every scan:
raised once for a file that keeps failing, as the scanError webhook is sent once."""

from __future__ import annotations

import socket
import threading

from ssftp.notify.owed import WAITING
from testkit.openssh_server import free_port
from tests.support.events import events_of
from tests.support.gateway import unique_name
from tests.support.scanning import sha256
from tests.support.waiting import wait_for
from tests.support.worker import Ssftp, outage_config

# --- waiting: once per file, however often it is retried --------------------------------------


class FailingClamd:
    """Something on a TCP port that takes every scan and answers an error: each file fails
    on its own and is retried with backoff, with no outage to hold the retries back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b"stream: Can't allocate memory ERROR\0")
                except OSError:
                    pass

    def stop(self) -> None:
        self.sock.close()


def test_a_file_that_keeps_failing_raises_waiting_once(tmp_path, prefect_api, receiver):
    clamd = FailingClamd()
    data = tmp_path / "data"
    (data / "staging" / "drop").mkdir(parents=True)
    instance = unique_name()
    config = outage_config(tmp_path, f"127.0.0.1:{clamd.port}", receiver)
    config.write_text(config.read_text() + f"instanceName: {instance}\n")
    worker = Ssftp(tmp_path, config, data, prefect_api, "worker")
    try:
        wait_for("the worker to start",
                 lambda: worker.events("scan worker started") or worker.proc.poll() is not None)
        assert worker.proc.poll() is None, worker.output()
        (data / "staging" / "drop" / "retried.txt").write_bytes(b"retried\n")
        wait_for("three failed attempts at the file",
                 lambda: len(worker.audit("drop/retried.txt")) >= 3)
    finally:
        code = worker.stop()
        clamd.stop()
    assert code == 0, worker.output()
    sha = sha256(b"retried\n")
    events = events_of([WAITING], instance, 1, [f"ssftp.file.{sha}"])
    assert len(events) == 1, [event.occurred for event in events]
    assert events[0].resource["ssftp.path"] == "drop/retried.txt"
    assert events[0].resource["ssftp.verdict"] == "error"
    assert len(receiver.received("/hook", "retried.txt")) == 1  # the same rule's webhook
