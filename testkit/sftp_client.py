"""The real OpenSSH ``sftp`` client in batch mode, and client keys to log in with."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncssh

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


@dataclass(frozen=True)
class SftpResult:
    returncode: int
    stdout: str
    stderr: str


def run_sftp(port: int, user: str, commands: list[str], *, cwd: Path,
             key: Path | None = None, password: str | None = None,
             timeout: float = 300, log_level: str = "ERROR") -> SftpResult:
    """Run OpenSSH ``sftp -b`` with either a key or a password (through SSH_ASKPASS).
    ``log_level``: ssh's LogLevel; at its default, INFO, it shows more of what a server
    says (a refused channel's reason, an auth banner)."""
    assert SFTP, "OpenSSH sftp client is not installed"
    batch = cwd / f".batch-{os.getpid()}-{threading.get_ident()}"
    batch.write_text("\n".join(commands) + "\n")
    args = [SFTP, "-F", "/dev/null", "-P", str(port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", f"LogLevel={log_level}", "-o", "Ciphers=aes128-gcm@openssh.com"]
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
