"""Hot reload of ssftp.yaml under a running server: valid changes apply to new logins, written
in place or renamed over the file; an invalid change is logged and the last good config stays."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator

import asyncssh
import paramiko
import pytest

from ssftp.config import reload as reload_module
from ssftp.config.reload import ConfigStore
from ssftp.errors import WatchIncompleteError
from ssftp.layout import DataLayout
from ssftp.passwords import hash_password
from ssftp.tree_watch import TreeWatch
from tests.support.config import write_config
from tests.support.gateway import ServerThread
from tests.support.logs import app_log_records
from tests.support.waiting import wait_for, wait_for_async

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
    wait_for("the change to apply", lambda: "second" in server.store.current.accounts)
    assert await can_login(server.port, "second", "second-pw")
    assert await can_login(server.port, "first", "first-pw")
    assert any(e["event"] == "config reloaded" for e in log_events(server))


async def test_change_renamed_over_the_file_applies(server):
    replacement = server.config_path.with_name("new.yaml")
    replacement.write_text(CONFIG.format(extra=SECOND).replace("first-pw", "changed-pw"))
    os.replace(replacement, server.config_path)
    wait_for("the change to apply", lambda: "second" in server.store.current.accounts)
    assert await can_login(server.port, "second", "second-pw")
    assert not await can_login(server.port, "first", "first-pw")
    assert await can_login(server.port, "first", "changed-pw")


async def test_invalid_change_keeps_last_good_config(server):
    server.config_path.write_text(CONFIG.format(extra=SECOND).replace("directory: second",
                                                                      "directory: ../escape"))

    async def rejected() -> bool:
        return any(e["event"].startswith("config change rejected") for e in log_events(server))

    assert await wait_for_async("the rejected change in the log", rejected, timeout=60.0)
    event = next(e for e in log_events(server) if e["event"].startswith("config change rejected"))
    assert any("users.stagingDir[1].directory" in p and "'..'" in p for p in event["problems"])
    assert await can_login(server.port, "first", "first-pw")
    assert not await can_login(server.port, "second", "second-pw")
    # The last good config is still the one in force, and a later fix is picked up.
    server.config_path.write_text(CONFIG.format(extra=SECOND))
    wait_for("the change to apply", lambda: "second" in server.store.current.accounts)
    assert await can_login(server.port, "second", "second-pw")



async def test_a_name_that_is_not_utf8_beside_the_file_does_not_stop_hot_reload(server):
    """Another program writes a file whose name is not UTF-8 next to ssftp.yaml. On 5b67aed
    watchfiles stopped for good at it (WatchfilesRustInternalError) and no later change of the
    config applied (seen failing)."""
    (server.config_path.parent / os.fsdecode(b"caf\xe9.yaml")).write_text("not ours")
    server.config_path.write_text(CONFIG.format(extra=SECOND))
    wait_for("the change to apply", lambda: "second" in server.store.current.accounts)
    assert await can_login(server.port, "second", "second-pw")


async def test_a_config_map_update_applies(tmp_path):
    """Kubernetes mounts a ConfigMap as ``ssftp.yaml -> ..data/ssftp.yaml`` with ``..data`` a
    symlink to a dated directory, and updates it by renaming a new ``..data`` over the old: the
    file's own name raises no event. On 5b67aed the update was never applied (seen failing)."""
    mount = tmp_path / "config"
    for stamp, extra in (("..2026_12_01", ""), ("..2026_12_02", SECOND)):
        (mount / stamp).mkdir(parents=True)
        write_config(mount / stamp / "ssftp.yaml", CONFIG.format(extra=extra))
    (mount / "..data").symlink_to("..2026_12_01")
    (mount / "ssftp.yaml").symlink_to("..data/ssftp.yaml")
    server = ServerThread(mount / "ssftp.yaml", tmp_path / "data")
    try:
        assert not await can_login(server.port, "second", "second-pw")
        (mount / "..data_tmp").symlink_to("..2026_12_02")
        os.replace(mount / "..data_tmp", mount / "..data")
        wait_for("the update to apply", lambda: "second" in server.store.current.accounts)
        assert await can_login(server.port, "second", "second-pw")
    finally:
        server.stop()


async def test_a_watch_that_fails_is_logged_once_and_the_file_is_looked_at_instead(
        tmp_path, monkeypatch):
    """The kernel refusing a watch (its max_user_watches, shared with every process of the
    machine, so not reached for real here: a fake refusal) costs hot reload nothing."""
    def refused(watch: TreeWatch) -> None:
        raise WatchIncompleteError(f"{watch.root} cannot be watched: No space left on device")

    monkeypatch.setattr(TreeWatch, "start", refused)
    monkeypatch.setattr(reload_module, "UNWATCHED_POLL_SECONDS", 0.02)
    monkeypatch.setattr(reload_module, "REWATCH_SECONDS", 0.1)
    config = write_config(tmp_path / "ssftp.yaml", CONFIG.format(extra=""))
    store = ConfigStore.open(config, DataLayout.at(tmp_path / "data"))

    def failures(seen: list[logging.LogRecord]) -> list[logging.LogRecord]:
        return [r for r in seen if r.getMessage().startswith("config watch failed")]

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            await asyncio.sleep(0.02)

    with app_log_records() as seen:
        watching = asyncio.create_task(store.watch())
        try:
            await until(lambda: failures(seen), "the watch to fail")
            config.write_text(CONFIG.format(extra=SECOND))
            await until(lambda: "second" in store.current.accounts, "the change to apply")
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    assert len(failures(seen)) == 1
    assert "No space left on device" in failures(seen)[0].fields["error"]  # type: ignore[attr-defined]

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


# --- a large config is parsed off the event loop ------------------------------------------------

ACCOUNTS = 40_000
LISTED, PARSING, PARSED = "listed", "parsing", "parsed"


def many_accounts(count: int) -> str:
    """``count`` staging accounts besides ``first``, with one bcrypt hash (an alias): no
    plaintext warning each, and the file stays within the 4 MiB a config may have."""
    hashed = hash_password("many-pw", "bcrypt")
    lines = [f"    - directory: m{n}\n      auth: {{username: m{n}, password: *hash}}\n"
             for n in range(1, count)]
    anchored = f"    - directory: m0\n      auth: {{username: m0, password: &hash '{hashed}'}}\n"
    return CONFIG.format(extra=anchored + "".join(lines))


@contextlib.contextmanager
def parses_marked(monkeypatch, timeline: list) -> Iterator[None]:
    """The real load_config, its start and end marked on ``timeline``."""
    real = reload_module.load_config

    def marked(path):
        timeline.append(PARSING)
        try:
            return real(path)
        finally:
            timeline.append(PARSED)

    monkeypatch.setattr(reload_module, "load_config", marked)
    yield


@contextlib.contextmanager
def listing(port: int, timeline: list) -> Iterator[None]:
    """A real SFTP client (paramiko) listing its root again and again, each answer marked."""
    stop = threading.Event()
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username="first", password="first-pw")
    sftp = paramiko.SFTPClient.from_transport(transport)

    def keep_listing() -> None:
        while not stop.is_set():
            sftp.listdir(".")
            timeline.append(LISTED)

    thread = threading.Thread(target=keep_listing, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
        transport.close()


def reloaded(timeline: list) -> list[int]:
    return [at for at, entry in enumerate(timeline) if isinstance(entry, logging.LogRecord)
            and entry.getMessage() == "config reloaded"]


def test_listings_are_answered_while_a_large_config_is_parsed(server, monkeypatch):
    """On main the watcher parsed on the event loop that serves every session: a reload to
    40 000 accounts took listings from 0.3 s to 6.9 s, and none was answered meanwhile."""
    with app_log_records() as timeline, parses_marked(monkeypatch, timeline), \
            listing(server.port, timeline):
        server.config_path.write_text(many_accounts(ACCOUNTS))
        wait_for("the reload", lambda: reloaded(timeline), timeout=120)
    start, end = timeline.index(PARSING), reloaded(timeline)[0]
    assert LISTED in timeline[start:end]
    assert len(server.store.current.accounts) == ACCOUNTS + 1


def test_a_change_during_a_parse_is_applied_after_it(server, monkeypatch):
    """The last content wins: a small change written while a large one is parsed is neither
    lost nor overtaken by the large one."""
    timeline: list = []
    with parses_marked(monkeypatch, timeline):
        server.config_path.write_text(many_accounts(ACCOUNTS))
        wait_for("the large config's parse to start", lambda: PARSING in timeline)
        server.config_path.write_text(CONFIG.format(extra=SECOND))
        wait_for("the small config to be applied",
                 lambda: "second" in server.store.current.accounts
                 and timeline.count(PARSING) == timeline.count(PARSED), timeout=120)
    server.call(asyncio.sleep(0))  # what the loop was handed before this has run
    assert set(server.store.current.accounts) == {"first", "second"}
