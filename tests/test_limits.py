"""One account cannot exhaust the server (issue 12, item 4): the per-session limits, with the
real server and real clients."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from ssftp.config.schema import LimitsSettings
from tests.support import unique_name
from tests.test_permissions_e2e import log_entries, sftp_as, wait_for_log

MAX_HANDLES = LimitsSettings().max_open_handles


def handle_refusals(gateway) -> list[dict]:
    return [e for e in log_entries(gateway.layout.log)
            if e.get("event") == "limit reached" and e.get("limit") == "maxOpenHandles"]


def test_open_handles_per_session_are_bounded(gateway) -> None:
    """Beyond maxOpenHandles an OPEN or OPENDIR fails (the descriptors of the whole server are
    not one client's to take); the session goes on, closing a file or a directory frees a
    slot, and another session logs in and downloads meanwhile. Logged once, not per request."""
    name = f"handles-{unique_name()}.txt"
    (gateway.layout.clean / "partner-a" / name).write_bytes(b"payload")
    too_many = rf"too many open handles \({MAX_HANDLES}\)"

    async def scenario() -> None:
        async with sftp_as(gateway, "consumer-a") as sftp:
            raw = sftp._handler  # OPENDIR and its handle as the protocol has them
            directory = await raw.opendir(b"/")
            files = [await sftp.open(name, "rb") for _ in range(MAX_HANDLES - 1)]
            for _ in range(2):
                with pytest.raises(asyncssh.SFTPFailure, match=too_many):
                    await sftp.open(name, "rb")
            with pytest.raises(asyncssh.SFTPFailure, match=too_many):
                await raw.opendir(b"/")
            assert await files[0].read() == b"payload"  # what is open still works
            async with sftp_as(gateway, "consumer-a") as other, other.open(name, "rb") as fresh:
                assert await fresh.read() == b"payload"
            await raw.close(directory)
            async with sftp.open(name, "rb") as again:
                assert await again.read() == b"payload"
            await files.pop().close()
            assert name in [entry.filename for entry in await sftp.readdir("/")]
            for file in files:
                await file.close()
            assert name in [entry.filename for entry in await sftp.readdir("/")]

    asyncio.run(scenario())
    refusal = wait_for_log(gateway.layout.log, lambda e: e.get("limit") == "maxOpenHandles",
                           what="handle limit refusal")
    assert refusal["user"] == "consumer-a" and refusal["value"] == MAX_HANDLES
    assert len(handle_refusals(gateway)) == 1
