"""asyncssh's own SFTP server, bare: the floor of the Python SSH stack ssftp is built on.

The same asyncssh, uvloop, cipher and client key as ssftp, and asyncssh's ``SFTPServer`` as it
ships (a chroot, nothing else): no jail checks, no session thread, no upload temp files, no
fsync, no logs, no scanning. What it reaches on a workload is what any SFTP server written on
this stack can reach before it does a gateway's work; where it falls short of a target too, the
per-request cost of asyncssh and CPython bounds that target, not ssftp.

``python -m bench.floor PORT ROOT AUTHORIZED_KEYS`` serves ``ROOT`` on 127.0.0.1:PORT until
killed, to any user name a key of that file logs in with; :class:`FloorServer` runs it for a
benchmark.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import uvloop

from bench.clients import CIPHER, HOST
from testkit.openssh_server import free_port
from testkit.sftp_client import ClientKey
from testkit.ssftp_process import wait_for_banner


async def _serve(port: int, root: Path, authorized_keys: Path) -> None:
    await asyncssh.listen(
        HOST, port, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        authorized_client_keys=str(authorized_keys),
        sftp_factory=functools.partial(asyncssh.SFTPServer, chroot=bytes(root)),
        allow_scp=False, encryption_algs=[CIPHER])
    await asyncio.Event().wait()


@dataclass
class FloorServer:
    """The bare server in a process of its own, as the other servers are."""

    process: subprocess.Popen[bytes]
    port: int
    root: Path

    @classmethod
    def start(cls, root: Path, key: ClientKey) -> FloorServer:
        """Serve ``root`` (created) to ``key``; its files beside it."""
        root.mkdir(parents=True, exist_ok=True)
        authorized_keys = root.with_name(root.name + ".authorized_keys")
        authorized_keys.write_text(key.public_line + "\n")
        output = root.with_name(root.name + ".out")
        port = free_port()
        with output.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.floor", str(port), str(root), str(authorized_keys)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        server = cls(process, port, root)
        try:
            wait_for_banner(port, process, "asyncssh's bare SFTP server", output)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


if __name__ == "__main__":
    uvloop.run(_serve(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))  # as ssftp's
