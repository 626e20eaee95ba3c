"""A client repeating refused requests writes a few log lines, not one each (issue: refused
STATs on one connection with 10 channels wrote 8 MB of log in 15 s, about 2 GB an hour).

Per connection and per kind (operation and reason) the first refusal is logged with its path,
the rest are counted and one line with ``suppressed`` follows at most once per interval, and
what is pending when the connection ends is logged then: every refusal is counted. With a real
server (on a thread, so that its log records can be counted) and real asyncssh clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from server.app import Service, start_service
from ssftp.config.reload import ConfigStore
from tests.support.config import PASSWORDS, gateway_config, write_config
from tests.support.gateway import ServerThread, beside
from tests.support.logs import app_log_records
from tests.support.waiting import wait_for

INTERVAL = 2.0
CHANNELS = 10
STATS_PER_CHANNEL = 300
KEYS_AT_ONCE = 16  # server.log_summary.MAX_KEYS


class SummarisingServer(ServerThread):
    """A server that logs a repeated refusal at most once per 2 s after the first."""

    async def _start(self) -> Service:
        store = ConfigStore.open(self.config_path, self.layout)
        return await start_service(store, host="127.0.0.1", port=0,
                                   refusal_log_seconds=INTERVAL)


@pytest.fixture
def summarising(tmp_path: Path, keys, gateway) -> Iterator[SummarisingServer]:
    config = write_config(tmp_path / "ssftp.yaml", gateway_config(keys))
    with beside(SummarisingServer(config, tmp_path / "data"), gateway) as server:
        yield server


def connect(server: ServerThread, username: str = "partner-a"):
    return asyncssh.connect("127.0.0.1", server.port, username=username,
                            password=PASSWORDS[username], known_hosts=None, login_timeout=60)


def lines_of(records: list[logging.LogRecord], event: str, op: str) -> list[dict]:
    return [record.fields for record in list(records)  # type: ignore[attr-defined]
            if record.msg == event and record.fields.get("op") == op]  # type: ignore[attr-defined]


def counted(lines: list[dict]) -> int:
    """A line is one refusal, or those it says were suppressed since the line before."""
    return sum(line.get("suppressed", 1) for line in lines)


def test_a_flood_of_refused_stats_is_logged_in_summary(summarising) -> None:
    """3 000 STATs of a reserved name on 10 channels of one connection, each refused: a line
    at the first, then at most one per interval and one when the connection ends, and the
    lines count every refusal (before: 3 000 lines)."""

    async def flood(sftp: asyncssh.SFTPClient) -> None:
        for index in range(STATS_PER_CHANNEL):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.stat(f".ssftp-tmp-flood-{index}")

    async def scenario() -> float:
        started = time.monotonic()
        async with connect(summarising) as conn:
            sessions = [await conn.start_sftp_client() for _ in range(CHANNELS)]
            await asyncio.gather(*(flood(sftp) for sftp in sessions))
        return time.monotonic() - started

    total = CHANNELS * STATS_PER_CHANNEL
    with app_log_records() as records:
        elapsed = asyncio.run(scenario())
        wait_for("every refused STAT counted in the log",
                 lambda: counted(lines_of(records, "refused", "stat")) >= total)
        lines = lines_of(records, "refused", "stat")
    assert counted(lines) == total
    assert len(lines) <= 3 + elapsed / INTERVAL, (len(lines), elapsed)
    assert "suppressed" not in lines[0] and lines[-1]["suppressed"] > 0
    assert lines[0]["path"].startswith(".ssftp-tmp-flood-")
    assert all(line["user"] == "partner-a" and line["ip"] == "127.0.0.1" for line in lines)


def test_refusals_of_other_kinds_and_connections_are_logged_apart(summarising) -> None:
    """The summary is per connection and per operation and reason: a refused STAT and a
    refused OPEN of the same connection each get their first line, and so does the same
    refusal on another connection."""

    async def refused_twice(conn: asyncssh.SSHClientConnection) -> None:
        async with conn.start_sftp_client() as sftp:
            for _ in range(2):
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await sftp.stat(".ssftp-tmp-kind")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await sftp.open(".ssftp-tmp-kind", "rb")

    async def scenario() -> None:
        async with connect(summarising) as first, connect(summarising) as second:
            await refused_twice(first)
            await refused_twice(second)

    with app_log_records() as records:
        asyncio.run(scenario())
        wait_for("every refusal counted in the log",
                 lambda: counted(lines_of(records, "refused", "stat")) >= 4
                 and counted(lines_of(records, "refused", "open")) >= 4)
        for op in ("stat", "open"):
            lines = lines_of(records, "refused", op)
            assert [line.get("suppressed") for line in lines] == [None, None, 1, 1], lines


def test_a_flood_of_refused_commands_is_logged_in_summary(summarising) -> None:
    """Exec requests refused on one connection (each its own channel, and a command name in
    each reason): a few lines, not one per command, and every one counted."""
    commands = 200

    async def scenario() -> None:
        async with connect(summarising, "consumer-a") as conn:
            for index in range(commands):
                result = await conn.run(f"cmd-{index}", encoding=None)
                assert result.exit_status == 1

    with app_log_records() as records:
        started = time.monotonic()
        asyncio.run(scenario())
        elapsed = time.monotonic() - started
        wait_for("every refused command counted in the log",
                 lambda: counted(lines_of(records, "refused", "exec")) >= commands)
        lines = lines_of(records, "refused", "exec")
    assert counted(lines) == commands
    # Each name is a reason of its own: 16 keys at once per interval, the rest share one.
    assert len(lines) <= (KEYS_AT_ONCE + 2) * (2 + elapsed / INTERVAL), (len(lines), elapsed)
