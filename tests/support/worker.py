"""``ssftp worker`` (or another command) as a subprocess on Prefect's test server, with a config
whose clamd may be absent or hung, and whose webhooks go to a test's receiver."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.support.cli import SSFTP
from tests.support.config import write_config
from tests.support.logs import json_lines
from tests.support.webhooks import WebhookReceiver

STOP_TIMEOUT = 60.0


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
        entries = json_lines(self.data / "log" / "ssftp.log")
        return [entry for entry in entries if entry.get("event") == name]

    def audit(self, file: str) -> list[dict[str, object]]:
        entries = json_lines(self.data / "log" / "audit.log")
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
