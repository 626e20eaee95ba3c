"""The logs a gateway operator reads: logins, transfers, refusals as JSON lines; no secrets."""

from __future__ import annotations

import json
import logging
import os
import time

from ssftp.layout import TEMP_PREFIX, remove_stale_temp_files
from ssftp.logs import APP, TextFormatter
from testkit.sftp_client import run_sftp
from tests.conftest import PARTNER_PASSWORD


def events(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_logins_and_transfers_are_logged_without_secrets(gateway, keys, workdir):
    (workdir / "logged.txt").write_text("12345")
    ok = run_sftp(gateway.port, "partner-a", ["put logged.txt"], cwd=workdir,
                  password=PARTNER_PASSWORD)
    assert ok.returncode == 0, ok.stderr
    bad = run_sftp(gateway.port, "partner-a", ["ls"], cwd=workdir, password="WrongPassw0rd!")
    assert bad.returncode != 0
    key = run_sftp(gateway.port, "partner-a", ["ls"], cwd=workdir, key=keys.partner.private_path)
    assert key.returncode == 0

    app = events(gateway.layout.log / "ssftp.log")
    logins = [e for e in app if e["event"] == "login" and e["user"] == "partner-a"]
    assert {(e["method"], e["ok"]) for e in logins} >= {
        ("password", True), ("password", False), ("publickey", True)}
    assert all(e["ip"] == "127.0.0.1" for e in logins)
    assert any(e.get("key", "").startswith("SHA256:") for e in logins if e["ok"])

    transfers = events(gateway.layout.log / "transfer.log")
    upload = next(e for e in transfers if e["path"] == "/logged.txt")
    assert upload["direction"] == "upload" and upload["bytes"] == 5 and upload["ok"] is True
    assert upload["user"] == "partner-a" and isinstance(upload["ms"], float)

    everything = "".join(p.read_text() for p in gateway.layout.log.iterdir())
    for secret in (PARTNER_PASSWORD, "WrongPassw0rd!", "consumer-secret-pw"):
        assert secret not in everything


def test_stale_temp_files_are_removed_by_the_servers_clock(tmp_path):
    """Young ones are kept (another instance may be receiving them), whatever their mtime."""
    old = tmp_path / "a" / f"{TEMP_PREFIX}old"
    young = tmp_path / f"{TEMP_PREFIX}young"
    normal = tmp_path / "a" / "report.csv"
    old.parent.mkdir()
    for path in (old, young, normal):
        path.write_text("x")
    os.utime(young, (0, 0))  # a client's mtime says nothing of when the server wrote it
    created = time.time()
    assert remove_stale_temp_files(tmp_path, 24 * 3600, now=created + 3600) == []
    assert sorted(remove_stale_temp_files(tmp_path, 24 * 3600, now=created + 3 * 24 * 3600)) \
        == sorted([old, young])
    assert not old.exists() and not young.exists() and normal.exists()


def test_the_text_console_escapes_what_a_terminal_would_act_on():
    """Fields carry names partners chose; one that is not UTF-8 (a surrogate from the file
    system) is shown as its byte, never raises. On main ESC, BEL and C1 reached the console."""
    record = logging.getLogger(APP).makeRecord(
        APP, logging.WARNING, __file__, 0, "refused", (), None,
        extra={"fields": {"path": "in/\x1b]0;PWNED\x07\x9b-\udcff.txt", "user": "u"}})
    line = TextFormatter().format(record)
    assert line.endswith("warning  refused  path=in/\\x1b]0;PWNED\\x07\\x9b-\\xff.txt user=u")
    assert all(char.isprintable() for char in line)
