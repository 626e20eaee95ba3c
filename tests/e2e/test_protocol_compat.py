"""Protocol details real clients depend on (issue 14), each checked with the real client.

- ``scp`` (OpenSSH 9.2 speaks SFTP) exits 0 only when the server ends the session with an
  ``exit-status`` 0: every copy used to "fail" with 1.
- rclone 1.60 (pkg/sftp) sends WRITE packets with bytes after the data string; OpenSSH
  ignores them, asyncssh answered SSH_FX_BAD_MESSAGE.
- OpenSSH ``sftp``, psftp, rclone and curl print only a status code's text ("Permission
  denied"): the reason is also sent on the channel's stderr, which ssh and PuTTY print (the
  notices themselves: tests/unit/test_server_compat.py).
- ``ls -l`` shows the account name (``users-groups-by-id@openssh.com``), never host ids.
- The channel window the server advertises is ``limits.channelWindowBytes``.

Raw SFTP packets (an asyncssh channel to the ``sftp`` subsystem) test what a client library
would hide; the real clients test what a partner sees."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from testkit.files import make_random_file, sha256_file
from testkit.sftp_client import run_sftp
from tests.support.config import Keys, gateway_config, write_config
from tests.support.gateway import ServerThread, unique_name

SCP = shutil.which("scp")
RCLONE = shutil.which("rclone")
PSFTP = shutil.which("psftp")

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_WRITE = 1, 2, 3, 4, 6
FXP_STAT, FXP_STATUS, FXP_HANDLE, FXP_ATTRS = 17, 101, 102, 105
FXP_EXTENDED, FXP_EXTENDED_REPLY = 200, 201
FX_OK = 0
FXF_WRITE, FXF_CREAT, FXF_TRUNC = 0x02, 0x08, 0x10
ATTR_UIDGID = 0x02


def _ssh_options(port: int, key: Path) -> list[str]:
    return ["-F", "/dev/null", "-P", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key)]


def _staging(gateway: ServerThread, user: str = "partner-a") -> Path:
    return gateway.store.current.accounts[user].root


# -- raw SFTP over an asyncssh channel -----------------------------------------------------


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class RawSFTP:
    """An SFTP subsystem channel spoken byte by byte: the packets a buggy client sends."""

    def __init__(self, conn: asyncssh.SSHClientConnection,
                 stdin: asyncssh.SSHWriter[bytes], stdout: asyncssh.SSHReader[bytes],
                 stderr: asyncssh.SSHReader[bytes]) -> None:
        self.conn, self.stdin, self.stdout, self.stderr = conn, stdin, stdout, stderr
        self._next_id = 0

    async def send(self, kind: int, body: bytes) -> None:
        self.stdin.write(struct.pack(">IB", len(body) + 1, kind) + body)

    async def receive(self) -> tuple[int, bytes]:
        (length,) = struct.unpack(">I", await self.stdout.readexactly(4))
        packet = await self.stdout.readexactly(length)
        return packet[0], packet[1:]

    async def request(self, kind: int, body: bytes) -> tuple[int, bytes]:
        """Send one request (its id first) and return the reply's type and its body after
        the id."""
        self._next_id += 1
        await self.send(kind, struct.pack(">I", self._next_id) + body)
        reply, payload = await self.receive()
        assert struct.unpack(">I", payload[:4])[0] == self._next_id
        return reply, payload[4:]

    async def open_for_write(self, name: str) -> bytes:
        reply, body = await self.request(FXP_OPEN, _string(name.encode()) + struct.pack(
            ">II", FXF_WRITE | FXF_CREAT | FXF_TRUNC, 0))
        assert reply == FXP_HANDLE, body
        return body[4:]

    async def expect_ok(self, kind: int, body: bytes) -> None:
        reply, payload = await self.request(kind, body)
        assert reply == FXP_STATUS, payload
        assert struct.unpack(">I", payload[:4])[0] == FX_OK, payload

    async def finish(self) -> int | None:
        """End the session as OpenSSH's sftp does (EOF) and return the exit status."""
        self.stdin.write_eof()
        await self.stdin.channel.wait_closed()
        return self.stdin.channel.get_exit_status()


async def _raw_sftp(port: int, key: Path) -> RawSFTP:
    conn = await asyncssh.connect("127.0.0.1", port, username="partner-a",
                                  client_keys=[str(key)], known_hosts=None)
    stdin, stdout, stderr = await conn.open_session(subsystem="sftp", encoding=None)
    raw = RawSFTP(conn, stdin, stdout, stderr)
    await raw.send(FXP_INIT, struct.pack(">I", 3))
    kind, _ = await raw.receive()
    assert kind == FXP_VERSION
    return raw


@pytest.fixture
def raw(gateway: ServerThread, keys: Keys) -> Iterator[RawSFTP]:
    runner = asyncio.Runner()
    session = runner.run(_raw_sftp(gateway.port, keys.partner.private_path))
    session.runner = runner  # type: ignore[attr-defined]
    yield session
    session.conn.close()
    runner.run(session.conn.wait_closed())
    runner.close()


def _run(raw: RawSFTP, coroutine):  # type: ignore[no-untyped-def]
    return raw.runner.run(coroutine)  # type: ignore[attr-defined]


# -- 1. exit-status ------------------------------------------------------------------------


def test_a_session_ended_by_the_client_exits_0(raw: RawSFTP) -> None:
    assert _run(raw, raw.finish()) == 0


def test_a_session_ended_on_a_bad_packet_exits_non_zero(raw: RawSFTP) -> None:
    async def garbage() -> int | None:
        await raw.send(FXP_INIT, b"")  # a second INIT, and a truncated one: not SFTP
        await raw.stdin.channel.wait_closed()
        return raw.stdin.channel.get_exit_status()

    status = _run(raw, garbage())
    assert status is not None and status != 0


@pytest.mark.skipif(SCP is None, reason="OpenSSH scp is not installed")
@pytest.mark.parametrize("mode", ["upload", "download", "recursive", "preserve"])
def test_scp_exits_0_after_a_copy(gateway: ServerThread, keys: Keys, workdir: Path,
                                  mode: str) -> None:
    """OpenSSH 9.2's scp speaks SFTP and takes the exit status as its own."""
    assert SCP is not None
    name = f"scp-{mode}-{unique_name()}"
    if mode == "download":
        clean = gateway.layout.clean / "partner-a"
        clean.mkdir(parents=True, exist_ok=True)
        make_random_file(clean / name, 100_000)
        args = [*_ssh_options(gateway.port, keys.consumer.private_path),
                f"consumer-a@127.0.0.1:{name}", str(workdir / name)]
        expected, copied = clean / name, workdir / name
    elif mode == "recursive":
        tree = workdir / name
        (tree / "sub").mkdir(parents=True)
        make_random_file(tree / "sub" / "one.bin", 70_000)
        args = [*_ssh_options(gateway.port, keys.partner.private_path), "-r", str(tree),
                "partner-a@127.0.0.1:"]
        expected, copied = tree / "sub" / "one.bin", _staging(gateway) / name / "sub" / "one.bin"
    else:
        make_random_file(workdir / name, 100_000)
        flags = ["-p"] if mode == "preserve" else []
        args = [*_ssh_options(gateway.port, keys.partner.private_path), *flags,
                str(workdir / name), f"partner-a@127.0.0.1:{name}"]
        expected, copied = workdir / name, _staging(gateway) / name
    proc = subprocess.run([SCP, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(copied) == sha256_file(expected)


# -- 2. trailing bytes after a request's fields --------------------------------------------


def test_a_write_with_trailing_bytes_writes_only_the_declared_data(
        gateway: ServerThread, raw: RawSFTP) -> None:
    """What rclone 1.60 sends: the packet covers its 32 KiB buffer, the string what it read."""
    name = f"trailing-{unique_name()}.bin"
    first, second = os.urandom(20_000), os.urandom(5_000)

    async def upload() -> None:
        handle = await raw.open_for_write(name)
        for offset, data in ((0, first), (len(first), second)):
            body = _string(handle) + struct.pack(">Q", offset) + _string(data)
            await raw.expect_ok(FXP_WRITE, body + b"\0" * (32768 - len(data)))
        await raw.expect_ok(FXP_CLOSE, _string(handle))

    _run(raw, upload())
    assert (_staging(gateway) / name).read_bytes() == first + second


def test_other_requests_with_trailing_bytes_are_answered_as_openssh_does(
        gateway: ServerThread, raw: RawSFTP) -> None:
    """OpenSSH's sftp-server discards what follows the fields of any request."""
    name = f"stat-{unique_name()}.bin"
    (_staging(gateway) / name).write_bytes(b"x" * 123)

    async def stat() -> tuple[int, bytes]:
        return await raw.request(FXP_STAT, _string(name.encode()) + b"trailing junk")

    kind, body = _run(raw, stat())
    assert kind == FXP_ATTRS, body
    flags = struct.unpack(">I", body[:4])[0]
    assert flags & 0x01 and struct.unpack(">Q", body[4:12])[0] == 123


@pytest.mark.skipif(RCLONE is None, reason="rclone is not installed (Debian package rclone)")
def test_rclone_uploads_a_1_mib_file(gateway: ServerThread, keys: Keys, workdir: Path,
                                     tmp_path: Path) -> None:
    """rclone 1.60 (pkg/sftp) fails every file over 32 KiB on a strict server. Modtimes and
    hashes are switched off: setting times by path and the hash commands are other parts of
    issue 14."""
    assert RCLONE is not None
    name = f"rclone-{unique_name()}.bin"
    make_random_file(workdir / name, 1 << 20)
    env = {**os.environ, "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
           "RCLONE_CONFIG_SSFTP_TYPE": "sftp", "RCLONE_CONFIG_SSFTP_HOST": "127.0.0.1",
           "RCLONE_CONFIG_SSFTP_PORT": str(gateway.port),
           "RCLONE_CONFIG_SSFTP_USER": "partner-a",
           "RCLONE_CONFIG_SSFTP_KEY_FILE": str(keys.partner.private_path),
           "RCLONE_CONFIG_SSFTP_SET_MODTIME": "false",
           "RCLONE_CONFIG_SSFTP_DISABLE_HASHCHECK": "true",
           "RCLONE_CONFIG_SSFTP_SHELL_TYPE": "none"}
    proc = subprocess.run([RCLONE, "copyto", str(workdir / name), f"ssftp:{name}",
                           "--retries", "1", "--low-level-retries", "1"],
                          env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert sha256_file(_staging(gateway) / name) == sha256_file(workdir / name)


# -- 3. the reasons of refusals reach the clients that print only the code -----------------


def test_a_refusal_reason_is_written_on_stderr(raw: RawSFTP) -> None:
    async def refused_then_stderr() -> tuple[int, bytes, bytes]:
        kind, body = await raw.request(FXP_OPEN, _string(b"nothing-here") + struct.pack(
            ">II", 0x01, 0))  # a staging account may not download
        stderr = await asyncio.wait_for(raw.stderr.readline(), timeout=60)
        return kind, body, stderr

    kind, body, stderr = _run(raw, refused_then_stderr())
    assert kind == FXP_STATUS
    assert b"downloading needs the 'download' permission" in body  # the status message too
    assert stderr.startswith(b"ssftp: ")
    assert b"nothing-here" in stderr and b"downloading needs the 'download'" in stderr


def test_openssh_sftp_shows_the_reason_of_a_refused_get(gateway: ServerThread, keys: Keys,
                                                         workdir: Path) -> None:
    name = f"refused-{unique_name()}.bin"
    (_staging(gateway) / name).write_bytes(b"data")
    result = run_sftp(gateway.port, "partner-a", [f"get {name}", f"rm {name}"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode != 0
    assert "downloading needs the 'download' permission" in result.stderr, result.stderr


@pytest.mark.skipif(PSFTP is None, reason="PuTTY psftp is not installed (putty-tools)")
def test_psftp_shows_the_reason_of_a_refused_get(gateway: ServerThread, workdir: Path) -> None:
    assert PSFTP is not None
    name = f"refused-{unique_name()}.bin"
    (_staging(gateway) / name).write_bytes(b"data")
    batch = workdir / "psftp.batch"
    batch.write_text(f"get {name}\n")
    host_key = gateway.service.gateway.host_keys[0].get_fingerprint()
    proc = subprocess.run([PSFTP, "-batch", "-b", str(batch), "-pw", "partner-secret-pw",
                           "-P", str(gateway.port), "-hostkey", host_key,
                           "partner-a@127.0.0.1"], cwd=workdir, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    shown = proc.stdout + proc.stderr
    assert "downloading needs the 'download' permission" in shown, shown


def test_an_exec_command_s_refusal_is_on_stderr_once(gateway: ServerThread,
                                                      keys: Keys) -> None:
    """A hash command reports its own errors (server.exec_commands): no second line."""
    name = f"fifo-{unique_name()}"
    clean = gateway.layout.clean / "partner-a"
    clean.mkdir(parents=True, exist_ok=True)
    os.mkfifo(clean / name)  # refused by the session: not a regular file

    async def run() -> asyncssh.SSHCompletedProcess:
        async with asyncssh.connect("127.0.0.1", gateway.port, username="consumer-a",
                                    client_keys=[str(keys.consumer.private_path)],
                                    known_hosts=None) as conn:
            return await conn.run(f"sha256sum {name}")

    result = asyncio.run(run())
    assert result.exit_status == 1
    assert isinstance(result.stderr, str) and len(result.stderr.splitlines()) == 1, result.stderr


# -- 4. names, never host ids --------------------------------------------------------------


def test_users_groups_by_id_answers_the_account_name(raw: RawSFTP) -> None:
    async def ask() -> tuple[int, bytes]:
        ids = _string(struct.pack(">II", 0, 1000)) + _string(struct.pack(">I", 0))
        return await raw.request(FXP_EXTENDED, _string(b"users-groups-by-id@openssh.com") + ids)

    kind, body = _run(raw, ask())
    assert kind == FXP_EXTENDED_REPLY, body
    users_length = struct.unpack(">I", body[:4])[0]
    users, groups = body[4:4 + users_length], body[8 + users_length:]
    assert users == _string(b"partner-a") * 2
    assert groups == _string(b"ssftp")


def test_stat_carries_no_host_owner(gateway: ServerThread, raw: RawSFTP) -> None:
    name = f"owner-{unique_name()}.bin"
    (_staging(gateway) / name).write_bytes(b"x")
    kind, body = _run(raw, raw.request(FXP_STAT, _string(name.encode())))
    assert kind == FXP_ATTRS
    assert not struct.unpack(">I", body[:4])[0] & ATTR_UIDGID


def test_openssh_ls_l_shows_the_account_name(gateway: ServerThread, keys: Keys,
                                             workdir: Path) -> None:
    name = f"listed-{unique_name()}.bin"
    (_staging(gateway) / name).write_bytes(b"x" * 10)
    uid = str(os.stat(_staging(gateway)).st_uid)
    result = run_sftp(gateway.port, "partner-a", ["ls -l", f"ls -l {name}"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()
             if line.endswith(name) and not line.startswith("sftp>")]
    assert len(lines) == 2, result.stdout
    for fields in lines:
        assert fields[2:4] == ["partner-a", "ssftp"], fields
        assert uid not in fields[2:4]


def _advertised_window(raw: RawSFTP) -> int:
    """The client's send window starts at what the server advertised (asyncssh has no public
    accessor for it); INIT and VERSION took a few bytes of it."""
    return int(raw.stdin.channel._send_window)  # type: ignore[attr-defined]


def test_the_server_advertises_16_mib_by_default(raw: RawSFTP) -> None:
    assert (16 << 20) - 1024 <= _advertised_window(raw) <= 16 << 20


def test_the_server_advertises_the_configured_window(tmp_path: Path, keys: Keys) -> None:
    config = write_config(tmp_path / "ssftp.yaml", gateway_config(keys) + """
    limits:
      channelWindowBytes: 4194304
    """)
    server = ServerThread(config, tmp_path / "data")
    runner = asyncio.Runner()
    try:
        raw = runner.run(_raw_sftp(server.port, keys.partner.private_path))
        assert (4 << 20) - 1024 <= _advertised_window(raw) <= 4 << 20
        raw.conn.close()
        runner.run(raw.conn.wait_closed())
    finally:
        runner.close()
        server.stop()
