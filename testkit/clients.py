"""Drivers for the real SFTP clients partners use, run as subprocesses against 127.0.0.1.

Each driver builds one command line (host key checks off, key login only, no agent, no user
config) and runs it with a timeout; what the client printed and its exit status are returned
as they are, for the tests to judge. Used by the interop matrix and the hash command tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
TIMEOUT = 120.0
SSH_OPTIONS = ("-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "PreferredAuthentications=publickey")


@dataclass(frozen=True)
class Target:
    """Where a client logs in: a port, a user and the private key (OpenSSH format)."""

    port: int
    user: str
    key: Path


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def missing(program: str) -> str | None:
    """Why a client cannot run here, or None when it is installed."""
    return None if shutil.which(program) else f"{program} is not installed (scripts/bootstrap.sh)"


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        stdin: str | None = None, timeout: float = TIMEOUT) -> Run:
    proc = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=None if stdin is not None else subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def ssh(target: Target, command: str) -> Run:
    """OpenSSH ``ssh`` running one exec command."""
    return run(["ssh", *SSH_OPTIONS, "-i", str(target.key), "-p", str(target.port),
                f"{target.user}@{HOST}", command])


def scp_args(target: Target) -> list[str]:
    """``scp`` (SFTP protocol, the default since OpenSSH 9.0) up to its source and target."""
    return ["scp", *SSH_OPTIONS, "-i", str(target.key), "-P", str(target.port)]


def scp_remote(target: Target, path: str) -> str:
    return f"{target.user}@{HOST}:{path}"


def rclone_remote(target: Target, path: str) -> str:
    """An rclone on-the-fly remote (no config file): ``:sftp,host=...:path``."""
    return (f":sftp,host={HOST},port={target.port},user={target.user},"
            f"key_file={target.key}:{path}")


def rclone(args: list[str], *, cwd: Path) -> Run:
    """rclone with an empty config of its own and its log on stderr (``-v``: each file and
    the stats at the end)."""
    return run(["rclone", "--config", str(cwd / "rclone.conf"), "-v",
                "--retries", "1", "--low-level-retries", "1", *args], cwd=cwd)
