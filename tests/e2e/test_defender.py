"""Ban management with real clients (issue 27): a banned client is told why, `ssftp defender
list|unban` act on the data root's bans at once, and two `ssftp serve` on one data root share
a ban. Small failure counts and long bans: nothing waits a ban out."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from testkit.sftp_client import run_sftp
from testkit.ssftp_process import SsftpProcess
from tests.support.cli import ssftp
from tests.support.config import write_config
from tests.support.gateway import ServerThread, beside
from tests.support.logs import log_entries
from tests.support.waiting import wait_for

PASSWORD = "guarded-right-pw"
CONFIG = f"""
    sftpPort: 0
    fsyncUploads: false
    instanceName: defended
    defender:
      maxFailures: 2
      windowSeconds: 600
      banSeconds: 3600
    users:
      stagingDir:
        - directory: guarded
          auth:
            username: guarded
            password: {PASSWORD}
    """
BANNED = "address temporarily banned"


@contextlib.contextmanager
def paramiko_log() -> Iterator[list[str]]:
    """What paramiko logs (the auth banner, a disconnect's reason: what it shows of them)."""
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    transport = logging.getLogger("paramiko.transport")
    transport.addHandler(handler)
    level = transport.level
    transport.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        transport.removeHandler(handler)
        transport.setLevel(level)


def paramiko_login(port: int, password: str) -> None:
    """Log in and out with paramiko; raises what paramiko raises."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port, username="guarded", password=password,
                       look_for_keys=False, allow_agent=False, timeout=60)
        client.open_sftp().close()
    finally:
        client.close()


def get_banned(port: int) -> list[str]:
    """Two wrong passwords (maxFailures): the second gets the address banned and is told so;
    paramiko's log lines of it."""
    with paramiko_log() as seen:
        for _ in range(2):
            with pytest.raises(paramiko.AuthenticationException):
                paramiko_login(port, "wrong-password")
    return seen


def sftp_pwd(port: int, cwd: Path):
    return run_sftp(port, "guarded", ["pwd"], cwd=cwd, password=PASSWORD, timeout=120)


def listed(data: Path) -> list[dict]:
    result = ssftp("defender", "list", "--json", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def defended(tmp_path: Path, gateway) -> Iterator[ServerThread]:
    config = write_config(tmp_path / "ssftp.yaml", CONFIG)
    with beside(ServerThread(config, tmp_path / "data"), gateway) as server:
        yield server


def test_a_banned_client_is_told_and_an_unban_lets_it_in_at_once(defended, tmp_path) -> None:
    port, data = defended.port, defended.layout.root
    paramiko_login(port, PASSWORD)  # in before
    seen = get_banned(port)
    assert any(line.startswith("Disconnect (code 1): " + BANNED) for line in seen), seen
    assert any(BANNED in line for line in seen if line.startswith("Auth banner")), seen

    refused = sftp_pwd(port, tmp_path)  # the right password, from OpenSSH's sftp
    assert refused.returncode != 0
    assert f"port {port}:1: {BANNED} after repeated failed logins" in refused.stderr
    assert "Permission denied" not in refused.stderr

    (ban,) = wait_for("the ban in the data root's store", lambda: listed(data))
    assert ban["address"] == "127.0.0.1" and ban["failures"] == 2
    assert ban["server"].startswith("defended pid ")
    shown = ssftp("defender", "list", "--data-dir", str(data))
    assert shown.stdout.startswith("127.0.0.1  banned until ") and "2 failures" in shown.stdout

    unban = ssftp("defender", "unban", "127.0.0.1", "--data-dir", str(data))
    assert unban.returncode == 0, unban.stderr
    assert unban.stdout.startswith("127.0.0.1 unbanned (was banned until ")
    allowed = sftp_pwd(port, tmp_path)  # at once: no wait, no restart
    assert allowed.returncode == 0, allowed.stderr
    assert listed(data) == []

    audit = [e for e in log_entries(defended.layout.log, "audit.log")
             if e.get("address") == "127.0.0.1"]
    assert [e["event"] for e in audit] == ["ban", "unban"]
    assert audit[1]["operator"] and audit[1]["server"] == ban["server"]
    assert any(e.get("event") == "address unbanned" and e.get("ip") == "127.0.0.1"
               for e in log_entries(defended.layout.log))


def test_unban_says_so_when_there_is_nothing_to_lift(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "system").mkdir(parents=True)
    missing = ssftp("defender", "unban", "192.0.2.7", "--data-dir", str(data))
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "ssftp defender unban: 192.0.2.7 is not banned\n"
    invalid = ssftp("defender", "unban", "192.0.2.999", "--data-dir", str(data))
    assert invalid.returncode == 2
    assert invalid.stderr == ("ssftp defender: '192.0.2.999' is not an IP address (such as "
                              "192.0.2.7 or 2001:db8::7)\n")
    nowhere = ssftp("defender", "list", "--data-dir", str(tmp_path / "none"))
    assert nowhere.returncode == 2 and nowhere.stderr.count("\n") == 1


def test_two_servers_on_one_data_root_share_a_ban(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ssftp.yaml", CONFIG)
    data = tmp_path / "data"
    one = SsftpProcess.start("serve", tmp_path, config, data)
    try:
        other = SsftpProcess.start("serve", tmp_path, config, data)
        try:
            assert sftp_pwd(other.port, tmp_path).returncode == 0  # it has looked at the bans
            get_banned(one.port)
            wait_for("the ban in the data root's store", lambda: listed(data))
            refused = sftp_pwd(other.port, tmp_path)
            assert refused.returncode != 0 and BANNED in refused.stderr, refused.stderr
            unban = ssftp("defender", "unban", "127.0.0.1", "--data-dir", str(data))
            assert unban.returncode == 0, unban.stderr
            for server in (one, other):
                allowed = sftp_pwd(server.port, tmp_path)
                assert allowed.returncode == 0, allowed.stderr
        finally:
            other.stop()
    finally:
        one.stop()
