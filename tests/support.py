"""Test support: a real ssftp server on 127.0.0.1 (in a thread with its own event loop), real
client keys, the real OpenSSH ``sftp`` client in batch mode, and a real webhook receiver.

The server runs in a thread so that tests can drive blocking clients (``sftp`` subprocesses,
paramiko) against it from the test body.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from server.app import Service, start_service
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout

SFTP = shutil.which("sftp")


@dataclass(frozen=True)
class ClientKey:
    private_path: Path
    public_line: str


def make_client_key(directory: Path, name: str, algorithm: str = "ssh-ed25519",
                    passphrase: str | None = None) -> ClientKey:
    key = asyncssh.generate_private_key(algorithm, comment=f"{name}@test")
    path = directory / name
    path.write_bytes(key.export_private_key("openssh", passphrase))
    path.chmod(0o600)
    public = key.export_public_key("openssh").decode().strip()
    (directory / f"{name}.pub").write_text(public + "\n")
    return ClientKey(path, public)


class ServerThread:
    """``ssftp serve`` for one config file, on a free port, until ``stop()``."""

    def __init__(self, config_path: Path, data_dir: Path) -> None:
        self.config_path = config_path
        self.layout = DataLayout.at(data_dir).create()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.service: Service = self._call(self._start())

    async def _start(self) -> Service:
        store = ConfigStore.open(self.config_path, self.layout)
        return await start_service(store, host="127.0.0.1", port=0)

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    @property
    def port(self) -> int:
        return self.service.gateway.port

    @property
    def store(self) -> ConfigStore:
        return self.service.store

    def stop(self) -> None:
        self._call(self.service.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def write_config(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@dataclass(frozen=True)
class SftpResult:
    returncode: int
    stdout: str
    stderr: str


def run_sftp(port: int, user: str, commands: list[str], *, cwd: Path,
             key: Path | None = None, password: str | None = None,
             timeout: float = 300) -> SftpResult:
    """Run OpenSSH ``sftp -b`` with either a key or a password (through SSH_ASKPASS)."""
    assert SFTP, "OpenSSH sftp client is not installed"
    batch = cwd / f".batch-{os.getpid()}-{threading.get_ident()}"
    batch.write_text("\n".join(commands) + "\n")
    args = [SFTP, "-F", "/dev/null", "-P", str(port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "Ciphers=aes128-gcm@openssh.com"]
    env = {**os.environ}
    if key is not None:
        args += ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key),
                 "-o", "PreferredAuthentications=publickey"]
    else:
        assert password is not None
        askpass = cwd / f".askpass-{os.getpid()}"
        askpass.write_text("#!/bin/sh\nprintf '%s\\n' \"$SSFTP_TEST_PASSWORD\"\n")
        askpass.chmod(0o700)
        env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force",
                   SSFTP_TEST_PASSWORD=password)
        # BatchMode=no must come before -b, which would otherwise switch password prompts off.
        args += ["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
                 "-o", "PreferredAuthentications=password,keyboard-interactive",
                 "-o", "NumberOfPasswordPrompts=1"]
    args += ["-b", str(batch), f"{user}@127.0.0.1"]
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return SftpResult(proc.returncode, proc.stdout, proc.stderr)


def unique_name() -> str:
    """A short random token, so tests sharing one server never touch each other's files."""
    return uuid.uuid4().hex[:12]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def make_random_file(path: Path, size: int) -> Path:
    chunk = 1 << 20
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            n = min(chunk, remaining)
            handle.write(os.urandom(n))
            remaining -= n
    return path


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90.0) -> None:
    """Poll until ``condition()`` is true; the deadline only turns a hang into a clear failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every POST.

    ``/dead`` answers 503, and while ``gate`` is cleared it first waits for the gate, so a test
    can hold a delivery in flight for as long as it needs. Every other path answers ``status``
    (200 unless a test changes it).
    """

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[ReceivedRequest] = []
        self.arrived: list[ReceivedRequest] = []
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = ReceivedRequest(self.path, dict(self.headers.items()),
                                          self.rfile.read(length))
                receiver.arrived.append(request)
                if self.path.startswith("/dead"):
                    receiver.gate.wait(timeout=120)
                    status = 503
                else:
                    status = receiver.status
                receiver.requests.append(request)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, path: str, file: str) -> list[ReceivedRequest]:
        """Requests answered on ``path`` about the staged file whose path ends with ``file``."""
        return [r for r in list(self.requests)
                if r.path == path and str(r.json().get("filePath", "")).endswith(file)]

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
