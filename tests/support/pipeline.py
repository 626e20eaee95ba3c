"""The scan pipeline in one process: the SFTP server (thread), the scan worker exactly as
``ssftp up`` runs it (its own thread and event loop), a clamd of its own (so tests can stop and
restart it), a webhook receiver, on the session's Prefect test harness."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deployments.worker import WorkerThread
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.database import TEST_SIGNATURES
from testkit.sftp_client import run_sftp
from tests.support.config import PARTNER_PASSWORD, write_config
from tests.support.gateway import ServerThread
from tests.support.logs import json_lines
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver

SECRET = "webhook-signing-secret"
INSTANCE = "pipeline-test"
SCAN_LIMIT = 2 * 1024 * 1024


def pipeline_config(clamd_socket: Path, receiver: WebhookReceiver, *,
                    settle_seconds: float = 0.2) -> str:
    """``settle_seconds``: how long a file waits before it is scanned, published whole by
    the server (``renameGraceSeconds``) or not (``stableSeconds``)."""
    return f"""
    sftpPort: 0
    fsyncUploads: false
    instanceName: {INSTANCE}
    clamav:
      address: {clamd_socket}
      timeout: 60
      maxFileSize: {SCAN_LIMIT}
    scanning:
      stableSeconds: {settle_seconds}
      renameGraceSeconds: {settle_seconds}
      batchWindowSeconds: 0.1
      retryInitialSeconds: 0.5
      retryMaxSeconds: 1
    webhooks:
      - name: virusFound
        url: {receiver.url}/hook
        secret: {SECRET}
      - name: virusFound
        url: {receiver.url}/dead
        timeout: 120
        retries: 2
        retryDelaySeconds: 0.1
      - name: scanError
        url: {receiver.url}/hook
        secret: {SECRET}
    users:
      stagingDir:
        - directory: partner-a
          auth:
            username: partner-a
            password: {PARTNER_PASSWORD}
      cleanDir:
        - directory: partner-a
          auth:
            username: consumer-a
            password: consumer-pw
    """


@dataclass
class Pipeline:
    root: Path
    layout: DataLayout
    config: Path
    server: ServerThread
    receiver: WebhookReceiver
    clamd_dir: Path
    clamd: ClamdDaemon
    workers: list[WorkerThread] = field(default_factory=list)

    def staged(self, sub: str) -> Path:
        return self.layout.staging / "partner-a" / sub

    def clean(self, sub: str) -> Path:
        return self.layout.clean / "partner-a" / sub

    def quarantined(self, sub: str) -> Path:
        return self.layout.quarantine / "partner-a" / sub

    def upload(self, workdir: Path, commands: list[str]) -> None:
        result = run_sftp(self.server.port, "partner-a", commands, cwd=workdir,
                          password=PARTNER_PASSWORD)
        assert result.returncode == 0, result.stderr

    def start_worker(self) -> WorkerThread:
        worker = WorkerThread(ConfigStore.open(self.config, self.layout), None)
        worker.start()
        self.workers.append(worker)
        return worker

    def audit(self) -> list[dict[str, object]]:
        return json_lines(self.layout.log / "audit.log")

    def kept_out(self, name: str) -> dict[str, object]:
        """The verdict record of ``name`` once it is in quarantine; it is not in clean/."""
        quarantined = self.quarantined(name)
        wait_for(f"{name} in quarantine", quarantined.exists)
        assert not self.clean(name).exists()
        return verdict_record(quarantined)

    def scans_of(self, name: str) -> list[dict[str, object]]:
        """The audit records of every scan of a file whose name ends in ``name``."""
        return [r for r in self.audit() if r.get("event") == "scan"
                and str(r.get("file", "")).endswith(name)]


def verdict_record(quarantined: Path) -> dict[str, object]:
    """The verdict record beside a quarantined file."""
    return json.loads(quarantined.with_name(quarantined.name + ".verdict.json").read_text())


@contextmanager
def running_pipeline(root: Path, config_text: Callable[[Path, WebhookReceiver], str] = (
        pipeline_config)) -> Iterator[Pipeline]:
    """A whole stack under ``root`` whose config ``config_text`` writes (given clamd's socket
    and the receiver), its worker started; everything stopped after."""
    receiver = WebhookReceiver()
    clamd = ClamdDaemon.start(root / "clamd", database=TEST_SIGNATURES)
    config = write_config(root / "ssftp.yaml", config_text(clamd.socket, receiver))
    server = ServerThread(config, root / "data")
    stack = Pipeline(root, DataLayout.at(root / "data"), config, server, receiver,
                     root / "clamd", clamd)
    stack.start_worker()
    try:
        yield stack
    finally:
        for worker in stack.workers:
            worker.stop(timeout=30)
        server.stop()
        stack.clamd.stop()
        receiver.stop()
