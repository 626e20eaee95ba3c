"""A real OpenSSH ``sshd`` on 127.0.0.1, for tests and benchmarks.

Downloaders and uploaders talk to a *remote* SFTP server. Tests use a real OpenSSH server for
that remote rather than a mock or another asyncssh server, so that what is checked is how our
code behaves against the server partners actually run: its host key handling, its public key
authentication, its ``internal-sftp`` semantics.

``OpenSshServer.start()`` runs ``/usr/sbin/sshd -D -e -f <config>`` as a child process with
everything of its own in one directory: an ed25519 host key, an ``authorized_keys`` file, an
``sshd_config``, the pid file and the log (``sshd.log``). It touches nothing under ``/etc``.

The one system path it needs is ``/run/sshd``: sshd refuses to start without its privilege
separation directory, which the Debian package creates only when its service starts (it is
missing in containers). ``start()`` creates it (mode 0755) if missing. sshd also refuses to run
unless started with an absolute path (it re-executes itself for every connection).

The login user is the current user (``getpass.getuser()``); tests run as root, hence
``PermitRootLogin prohibit-password``. Every session is forced into ``internal-sftp`` with its
start directory set to ``sftp_root`` (no chroot), so relative SFTP paths land in ``sftp_root``.

Note on ``extra_config``: it is appended after the defaults, and sshd uses the *first* value it
reads for most keywords, so ``extra_config`` can add keywords (and ``Match`` blocks, which must
come last anyway) but cannot override a keyword this module already sets.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
HOST = "127.0.0.1"
PRIVSEP_DIR = "/run/sshd"
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
START_ATTEMPTS = 3
_BIND_FAILURES = ("Bind to port", "Cannot bind any address", "Address already in use")


def sshd_available() -> bool:
    """Whether the OpenSSH server binary is installed and executable."""
    return SSHD.is_file() and os.access(SSHD, os.X_OK)


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the caller must cope with a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _config_path_value(path: Path) -> str:
    """``path`` as an sshd_config argument; refuse paths sshd would split or expand."""
    text = str(path)
    if any(ch.isspace() for ch in text) or any(ch in text for ch in "\"'%#\\"):
        raise ValueError(f"path not usable in sshd_config without quoting: {text!r}")
    return text


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _has_banner(port: int, deadline: float) -> bool:
    """Whether a TCP connect to ``port`` succeeds and the server sends an SSH-2.0 banner."""
    timeout = max(0.1, min(2.0, deadline - time.monotonic()))
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data and len(data) < 1024:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith(b"SSH-2.0-")


@dataclass
class OpenSshServer:
    """A running ``sshd`` on 127.0.0.1; stop it with ``stop()`` or use it as a context manager."""

    port: int
    username: str
    sftp_root: Path
    directory: Path
    config_path: Path
    host_key_path: Path
    authorized_keys_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    host: str = HOST

    @classmethod
    def start(cls, directory: Path, *, authorized_keys: list[str], sftp_root: Path,
              port: int | None = None, extra_config: str = "") -> OpenSshServer:
        """Start sshd with its files in ``directory``, serving SFTP from ``sftp_root``.

        ``authorized_keys`` are OpenSSH public key lines allowed to log in as the current user.
        With ``port=None`` a free port is picked, and startup is retried (up to 3 attempts) with
        a new port if sshd cannot bind. Raises ``RuntimeError`` if sshd rejects the config or
        does not come up within 10 seconds.
        """
        if not sshd_available():
            raise RuntimeError(f"{SSHD} is not installed or not executable")
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        sftp_root = Path(sftp_root).resolve()
        sftp_root.mkdir(parents=True, exist_ok=True)
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)

        host_key_path = directory / "ssh_host_ed25519_key"
        if not host_key_path.exists():
            subprocess.run(
                [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key_path)],
                check=True, stdin=subprocess.DEVNULL, capture_output=True,
            )

        authorized_keys_path = directory / "authorized_keys"
        authorized_keys_path.write_text("".join(line.strip() + "\n" for line in authorized_keys))
        authorized_keys_path.chmod(0o600)

        username = getpass.getuser()
        config_path = directory / "sshd_config"
        log_path = directory / "sshd.log"
        attempts = 1 if port is not None else START_ATTEMPTS
        failure = ""
        for _ in range(attempts):
            chosen = port if port is not None else free_port()
            config_path.write_text(_render_config(
                directory=directory, port=chosen, username=username, sftp_root=sftp_root,
                host_key_path=host_key_path, authorized_keys_path=authorized_keys_path,
                extra_config=extra_config,
            ))
            _check_config(config_path)
            process = _launch(config_path, log_path)
            failure = _wait_until_ready(process, chosen, log_path)
            if not failure:
                return cls(
                    port=chosen, username=username, sftp_root=sftp_root, directory=directory,
                    config_path=config_path, host_key_path=host_key_path,
                    authorized_keys_path=authorized_keys_path, log_path=log_path,
                    process=process,
                )
            _terminate(process)
            if not any(marker in failure for marker in _BIND_FAILURES):
                break
        raise RuntimeError(f"sshd did not start: {failure}")

    @property
    def host_public_key_line(self) -> str:
        """The host public key as in the ``.pub`` file: ``<keytype> <base64> <comment>``."""
        return self.host_key_path.with_name(self.host_key_path.name + ".pub").read_text().strip()

    @property
    def known_hosts_line(self) -> str:
        """``[127.0.0.1]:<port> <keytype> <base64>``: OpenSSH known_hosts form for this port."""
        keytype, blob = self.host_public_key_line.split()[:2]
        return f"[{self.host}]:{self.port} {keytype} {blob}"

    @property
    def fingerprint(self) -> str:
        """The host key's ``SHA256:...`` fingerprint, as printed by ``ssh-keygen -lf``."""
        blob = base64.b64decode(self.host_public_key_line.split()[1])
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM the listener, wait up to 5 s, then SIGKILL. Safe to call more than once.

        Sessions already open run in their own (setsid) processes and end when their clients
        disconnect; stopping only closes the listening port.
        """
        _terminate(self.process)

    def __enter__(self) -> OpenSshServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def _render_config(*, directory: Path, port: int, username: str, sftp_root: Path,
                   host_key_path: Path, authorized_keys_path: Path, extra_config: str) -> str:
    root = _config_path_value(sftp_root)
    lines = [
        f"ListenAddress {HOST}",
        f"Port {port}",
        f"HostKey {_config_path_value(host_key_path)}",
        f"PidFile {_config_path_value(directory / 'sshd.pid')}",
        f"AuthorizedKeysFile {_config_path_value(authorized_keys_path)}",
        "StrictModes no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        f"AllowUsers {username}",
        f"Subsystem sftp internal-sftp -d {root}",
        f"ForceCommand internal-sftp -d {root}",
        "LogLevel VERBOSE",
        "MaxStartups 200:30:400",
        "MaxSessions 200",
    ]
    text = "\n".join(lines) + "\n"
    if extra_config:
        text += extra_config.rstrip("\n") + "\n"
    return text


def _check_config(config_path: Path) -> None:
    result = subprocess.run(
        [str(SSHD), "-t", "-f", str(config_path)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"sshd rejected {config_path} (exit {result.returncode}): {result.stderr.strip()}"
        )


def _launch(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )


def _wait_until_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> str:
    """Empty string once sshd answers with its banner; otherwise why it did not."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return f"sshd exited with status {code} on port {port}; log:\n{_log_tail(log_path)}"
        if _has_banner(port, deadline) and process.poll() is None:
            return ""
        time.sleep(0.05)
    return (f"no SSH banner on {HOST}:{port} within {STARTUP_TIMEOUT:.0f} s; log:\n"
            f"{_log_tail(log_path)}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except ProcessLookupError:
        process.wait()
