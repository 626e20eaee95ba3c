"""The logs a gateway operator reads: logins, transfers, refusals as JSON lines; no secrets."""

from __future__ import annotations

from testkit.sftp_client import run_sftp
from tests.support.config import PARTNER_PASSWORD
from tests.support.logs import json_lines


def test_logins_and_transfers_are_logged_without_secrets(gateway, keys, workdir):
    (workdir / "logged.txt").write_text("12345")
    ok = run_sftp(gateway.port, "partner-a", ["put logged.txt"], cwd=workdir,
                  password=PARTNER_PASSWORD)
    assert ok.returncode == 0, ok.stderr
    bad = run_sftp(gateway.port, "partner-a", ["ls"], cwd=workdir, password="WrongPassw0rd!")
    assert bad.returncode != 0
    key = run_sftp(gateway.port, "partner-a", ["ls"], cwd=workdir, key=keys.partner.private_path)
    assert key.returncode == 0

    app = json_lines(gateway.layout.log / "ssftp.log")
    logins = [e for e in app if e["event"] == "login" and e["user"] == "partner-a"]
    assert {(e["method"], e["ok"]) for e in logins} >= {
        ("password", True), ("password", False), ("publickey", True)}
    assert all(e["ip"] == "127.0.0.1" for e in logins)
    assert any(e.get("key", "").startswith("SHA256:") for e in logins if e["ok"])

    transfers = json_lines(gateway.layout.log / "transfer.log")
    upload = next(e for e in transfers if e["path"] == "/logged.txt")
    assert upload["direction"] == "upload" and upload["bytes"] == 5 and upload["ok"] is True
    assert upload["user"] == "partner-a" and isinstance(upload["ms"], float)

    everything = "".join(p.read_text() for p in gateway.layout.log.iterdir())
    for secret in (PARTNER_PASSWORD, "WrongPassw0rd!", "consumer-secret-pw"):
        assert secret not in everything
