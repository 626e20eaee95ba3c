"""Hot reload of ssftp.yaml under a running server: valid changes apply to new logins, written
in place or renamed over the file; an invalid change is logged and the last good config stays."""

from __future__ import annotations

import json
import os
import time

import asyncssh
import pytest

from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from tests.support import ServerThread, app_log_records, write_config

CONFIG = """
sftpPort: 0
users:
  stagingDir:
    - directory: first
      auth: {{username: first, password: first-pw}}
{extra}
"""
SECOND = """    - directory: second
      auth: {username: second, password: second-pw}
"""


async def can_login(port: int, username: str, password: str) -> bool:
    try:
        async with (
            asyncssh.connect("127.0.0.1", port, username=username, password=password,
                             known_hosts=None, client_keys=None) as conn,
            conn.start_sftp_client() as sftp,
        ):
            await sftp.listdir(".")
        return True
    except asyncssh.PermissionDenied:
        return False


async def eventually(check, deadline: float = 15.0) -> bool:
    """Poll an async condition; reload follows a file change after a short debounce."""
    import asyncio

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.fixture
def server(tmp_path):
    config = write_config(tmp_path / "ssftp.yaml", CONFIG.format(extra=""))
    thread = ServerThread(config, tmp_path / "data")
    yield thread
    thread.stop()


def log_events(server: ServerThread) -> list[dict]:
    text = (server.layout.log / "ssftp.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_change_written_in_place_applies_to_new_logins(server):
    assert await can_login(server.port, "first", "first-pw")
    assert not await can_login(server.port, "second", "second-pw")
    with open(server.config_path, "w") as handle:  # in place: same inode
        handle.write(CONFIG.format(extra=SECOND))
    assert await eventually(lambda: can_login(server.port, "second", "second-pw"))
    assert await can_login(server.port, "first", "first-pw")
    assert any(e["event"] == "config reloaded" for e in log_events(server))


async def test_change_renamed_over_the_file_applies(server):
    replacement = server.config_path.with_name("new.yaml")
    replacement.write_text(CONFIG.format(extra=SECOND).replace("first-pw", "changed-pw"))
    os.replace(replacement, server.config_path)
    assert await eventually(lambda: can_login(server.port, "second", "second-pw"))
    assert not await can_login(server.port, "first", "first-pw")
    assert await can_login(server.port, "first", "changed-pw")


async def test_invalid_change_keeps_last_good_config(server):
    server.config_path.write_text(CONFIG.format(extra=SECOND).replace("directory: second",
                                                                      "directory: ../escape"))

    async def rejected() -> bool:
        return any(e["event"].startswith("config change rejected") for e in log_events(server))

    assert await eventually(rejected)
    event = next(e for e in log_events(server) if e["event"].startswith("config change rejected"))
    assert any("users.stagingDir[1].directory" in p and "'..'" in p for p in event["problems"])
    assert await can_login(server.port, "first", "first-pw")
    assert not await can_login(server.port, "second", "second-pw")
    # The last good config is still the one in force, and a later fix is picked up.
    server.config_path.write_text(CONFIG.format(extra=SECOND))
    assert await eventually(lambda: can_login(server.port, "second", "second-pw"))


def test_the_same_rejected_change_is_logged_once(tmp_path):
    """One save raises several file events, and each reloads: the operator reads the problems
    once per rejected content, and again only when the file changes again."""
    config = write_config(tmp_path / "ssftp.yaml", CONFIG.format(extra=""))
    store = ConfigStore.open(config, DataLayout.at(tmp_path / "data"))
    with app_log_records() as seen:
        bad = CONFIG.format(extra=SECOND).replace("directory: second", "directory: /abs")
        config.write_text(bad)
        assert not store.reload()
        assert not store.reload()
        rejections = [r for r in seen if r.getMessage().startswith("config change rejected")]
        assert len(rejections) == 1
        config.write_text(bad.replace("directory: /abs", "directory: ../up"))
        assert not store.reload()
        rejections = [r for r in seen if r.getMessage().startswith("config change rejected")]
        assert len(rejections) == 2
        assert "'..'" in " ".join(rejections[-1].fields["problems"])  # type: ignore[attr-defined]
