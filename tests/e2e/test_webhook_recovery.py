"""No webhook is lost to a killed ``ssftp up`` (issue 13, item 3): SIGKILL in the middle of a
scan run that is quarantining files, then a new ``up`` on the same data root delivers every
webhook the dead one owed.

On the main this replaces, notifications lived in memory from the end of a scan run until
their POST: files the run had already quarantined when the process died never got theirs
(9 of 52 and 23 of 47 in the issue's crash rounds). Now each is in the outbox before its file
moves (the deterministic proof is in tests/test_audit_order.py; this is the whole gateway).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from ssftp.layout import is_reserved_name
from testkit.files import EICAR
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.config import write_config
from tests.support.up import PARTNER, PARTNER_PW, launch_up, shut_down, up_config, wait_until_up
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver

INFECTED_FILES = 30
# Clean files large enough to keep the scan run busy for a few seconds: the kill lands while
# the run is still moving files.
CLEAN_FILES, CLEAN_BYTES = 30, 8 << 20


def webhook_config(receiver: WebhookReceiver) -> str:
    return up_config() + f"""
    webhooks:
      - name: virusFound
        url: {receiver.url}/held
        retries: 2
    """


def quarantined(data: Path) -> set[str]:
    area = data / "quarantine"
    return {path.relative_to(data).as_posix() for path in area.rglob("*")
            if path.is_file() and not path.name.endswith(".verdict.json")
            and not is_reserved_name(path.name)}  # a record's temp file the kill cut short


def notified(receiver: WebhookReceiver) -> set[str]:
    return {str(json.loads(request.body)["destination"]) for request in list(receiver.requests)
            if request.path == "/held"}


def staged(data: Path) -> list[Path]:
    """The files in staging. By os.walk, which skips a directory gone while it looks: the
    scanner removes its claim directories meanwhile, and rglob raised FileNotFoundError."""
    return [Path(root, name) for root, _, names in os.walk(data / "staging") for name in names]


def test_a_killed_up_owes_no_webhook_once_it_is_started_again(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    receiver.gate.clear()  # nothing is delivered before the kill: every webhook is owed
    config = write_config(tmp_path / "ssftp.yaml", webhook_config(receiver))
    data = tmp_path / "data"
    client = tmp_path / "client"
    client.mkdir()
    for number in range(INFECTED_FILES):
        (client / f"eicar-{number:02d}.com").write_bytes(EICAR)
    for number in range(CLEAN_FILES):
        (client / f"big-{number:02d}.bin").write_bytes(os.urandom(CLEAN_BYTES))
    instance = launch_up(tmp_path, config, data, free_port(), free_port())
    again = None
    try:
        wait_until_up(instance)
        put = run_sftp(instance.sftp_port, PARTNER, ["put eicar-*", "put big-*"], cwd=client,
                       password=PARTNER_PW, timeout=300)
        assert put.returncode == 0, put.stdout + put.stderr
        wait_for("a first file in quarantine", lambda: quarantined(data), timeout=120,
                 details=instance.tail)
        os.killpg(instance.proc.pid, signal.SIGKILL)
        instance.proc.wait(timeout=30)
        receiver.gate.set()
        killed_with = quarantined(data)

        again = launch_up(tmp_path, config, data, free_port(), free_port())
        wait_until_up(again)
        wait_for("every staged file scanned after the restart", lambda: not staged(data),
                 timeout=300, details=again.tail)
        assert len(quarantined(data)) >= INFECTED_FILES
        wait_for("a delivered webhook for every quarantined file",
                 lambda: quarantined(data) <= notified(receiver), timeout=120,
                 details=lambda: f"not notified: {sorted(quarantined(data) - notified(receiver))}"
                                 f"\n{again.tail() if again else ''}")
        assert killed_with <= notified(receiver)
    finally:
        receiver.gate.set()
        shut_down(instance)
        if again is not None:
            shut_down(again)
        receiver.stop()
