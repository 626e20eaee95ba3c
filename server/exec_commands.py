"""SSH exec commands: ``md5sum``, ``sha1sum`` and ``sha256sum`` of one file, as SFTPGo has them.

Sync tools ask the server for a file's hash over an exec channel instead of downloading it
(rclone ``check`` and ``md5sum``, and rclone's check after each copy). Nothing else runs: there
is no shell, and any other command (a shell, another subsystem) is refused with one line on
stderr and exit status 1, which clients show.

A hash is a download that the server reads on the client's behalf, so it goes through the
account's own SFTP session: the same jail, the ``download`` permission, the same refusals
(reserved names, FIFOs, hard links, paths out of the home), the same transfer log, and the
file is read in the session's thread, off the event loop. Without a path (or with ``-``) the
command hashes its standard input, as coreutils does: rclone runs ``md5sum`` on empty input
first to learn whether the command works. That needs ``download`` too, so on an account that
cannot read files (staging) rclone learns at once that there are no hashes and does without.

Each command runs in a thread of its own session and holds its buffers (the file read a chunk
at a time, standard input counted in its connection's bytes in flight, server.in_flight); an
account runs at most ``limits.maxHashCommandsPerAccount`` at once, the next one is refused
with the reason and exit status 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncssh
from asyncssh import SFTPAttrs

from server.handles import DownloadHandle
from server.off_loop import run_off_loop
from server.sftp_session import SFTPSession
from ssftp.errors import Refused
from ssftp.permissions import Permission

HASHES: dict[str, Callable[[], Any]] = {
    "md5sum": hashlib.md5,
    "sha1sum": hashlib.sha1,
    "sha256sum": hashlib.sha256,
}
STDIN = "-"
_CHUNK = 1 << 20
_OFFERED = "only SFTP and the commands md5sum, sha1sum, sha256sum (one path) are available"


@dataclass(frozen=True)
class HashCommand:
    algorithm: str  # a key of HASHES
    path: str  # as the client gave it (shown in the output, as coreutils does); STDIN for stdin


def parse_command(command: str | None) -> HashCommand:
    """The hash command in an exec request (quoted as a POSIX shell would, which is how rclone
    escapes paths); raises Refused for anything else: no command is a shell."""
    if command is None:
        raise Refused(f"no shell here: {_OFFERED}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise Refused(f"cannot parse the command ({exc}): {_OFFERED}") from None
    if not argv or argv[0] not in HASHES:
        name = argv[0] if argv else ""
        raise Refused(f"command not available: {name!r}; {_OFFERED}")
    if len(argv) > 2:
        raise Refused(f"{argv[0]} takes one path here")
    path = argv[1] if len(argv) == 2 else STDIN
    if path.startswith("-") and path != STDIN:
        raise Refused(f"{argv[0]}: options are not supported")
    return HashCommand(argv[0], path)


def digest_file(algorithm: str, fd: int) -> tuple[str, int]:
    """The hex digest of an open file and the bytes read (read by offset: the position is not
    the handle's)."""
    digest = HASHES[algorithm]()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return str(digest.hexdigest()), offset


async def _hash_file(session: SFTPSession, request: HashCommand) -> str:
    handle = await session.open(request.path.encode(), asyncssh.FXF_READ, SFTPAttrs())
    assert isinstance(handle, DownloadHandle)
    try:
        hexdigest, handle.bytes = await run_off_loop(session.executor, digest_file,
                                                     request.algorithm, handle.fd)
    finally:
        await session.close(handle)
    return hexdigest


async def _hash_input(session: SFTPSession, request: HashCommand,
                      stdin: asyncssh.SSHReader[bytes]) -> str:
    digest = HASHES[request.algorithm]()
    while chunk := await stdin.read(_CHUNK):
        await run_off_loop(session.executor, digest.update, chunk)
    return str(digest.hexdigest())


async def run_command(command: str | None, session: SFTPSession, running: Counter[str],
                      stdin: asyncssh.SSHReader[bytes], stdout: asyncssh.SSHWriter[bytes],
                      stderr: asyncssh.SSHWriter[bytes]) -> int:
    """Run one exec request and return its exit status: 0 and ``<hex>  <path>`` on stdout as
    coreutils prints it, or 1 and ``<command>: [<path>: ]<reason>`` on stderr. ``running``
    counts the hash commands running by account (all connections of the listener)."""
    try:
        request = _allowed(command, session)
        with _slot(session, running):
            hexdigest = await _hash(session, request, stdin)
    except Refused as refusal:
        stderr.write(f"{_name(command)}: {refusal.reason}\n".encode())
        return 1
    except (asyncssh.SFTPError, OSError) as exc:  # session.open refuses (and logs) as for SFTP
        reason = exc.reason if isinstance(exc, asyncssh.SFTPError) else exc.strerror or exc
        stderr.write(f"{request.algorithm}: {request.path}: {reason}\n".encode())
        return 1
    stdout.write(f"{hexdigest}  {request.path}\n".encode())
    return 0


async def _hash(session: SFTPSession, request: HashCommand,
                stdin: asyncssh.SSHReader[bytes]) -> str:
    if request.path == STDIN:
        return await _hash_input(session, request, stdin)
    return await _hash_file(session, request)


def _allowed(command: str | None, session: SFTPSession) -> HashCommand:
    """The request, if the account may run it; a refusal is logged (in summary) as SFTP's
    are."""
    try:
        request = parse_command(command)
        session.permissions.require(Permission.DOWNLOAD, "hashing a file")
    except Refused as refusal:
        session.log_refusal(("exec", refusal.reason), "refused", op="exec",
                            command=command or "", reason=refusal.reason)
        raise
    return request


@contextlib.contextmanager
def _slot(session: SFTPSession, running: Counter[str]) -> Iterator[None]:
    """Count a hash command of the session's account while it runs, or refuse it beyond
    ``maxHashCommandsPerAccount``: each one is a thread hashing a file (200 at once took
    2.2 GiB and 222 threads, and slowed every other partner's transfers)."""
    username = session.account.username
    limit = session.context.limits().max_hash_commands_per_account
    if running[username] >= limit:
        session.log_refusal(("maxHashCommandsPerAccount",), "limit reached", op="exec",
                            limit="maxHashCommandsPerAccount", value=limit)
        raise Refused(f"too many hash commands running for this account ({limit}); "
                      "try again later")
    running[username] += 1
    try:
        yield
    finally:
        running[username] -= 1
        if not running[username]:
            del running[username]


def _name(command: str | None) -> str:
    """What a refusal on stderr starts with, as a shell's would: the command's first word."""
    return (command or "").split(" ", 1)[0] or "ssftp"
