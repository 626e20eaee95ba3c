"""The interop matrix (issue 14): each client partners use x each operation, against ssftp and
against OpenSSH's internal-sftp with the same test body, so that a client's own limit is told
apart from ssftp's.

Servers: ssftp (the module's gateway: uploads as the staging account ``partner-a``, downloads
as ``consumer-a`` from ``clean/partner-a``; the test plays the scanner by writing there) and
a real sshd with ``internal-sftp`` (testkit.openssh_server; one directory for both). Clients:
OpenSSH sftp and scp, lftp, rclone, PuTTY psftp and pscp, curl (libssh2), sshfs, paramiko,
asyncssh. A row whose client is not installed (or sshfs without /dev/fuse) is skipped with the
reason. Files are small (rclone's uploads over 32 KiB are helper X1's row of issue 14).

Every row passes on both servers. On main before issue 14's fixes (0e30df1) 22 ssftp rows
failed and no OpenSSH row: scp's exit status, rclone SetModTime, sshfs in staging, mtimes set
by path, lftp temp names, resume, refusals without their reason. A
client's own limit is an operation its driver does not have (``None``, with the reason). The
row ssftp refuses on purpose (a staging account downloading) asserts the client shows the
reason, or what the client can show of it.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh
import paramiko
import pytest

from testkit.clients import HOST, Run, Target, missing, rclone, rclone_remote, run, scp_args
from testkit.openssh_server import OpenSshServer, sshd_available
from testkit.sftp_client import run_sftp
from tests.support.gateway import unique_name
from tests.support.repo import REPO
from tests.support.waiting import wait_for

CONTENT = b"matrix row data\n" * 64  # 1 KiB: below rclone's 32 KiB write trouble
MTIME = 1_000_000_000
SERVERS = ("ssftp", "openssh")


# -- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    """Where uploads go and downloads come from, as the clients and the disk see them."""

    name: str
    uploader: Target
    downloader: Target
    upload_root: Path
    download_root: Path
    host_keys: list[str]  # SHA256 fingerprints (PuTTY asks them up front)

    def place(self, relative: str, content: bytes = CONTENT) -> str:
        """A file to download (on ssftp: as if the scanner had passed it to clean/)."""
        path = self.download_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return relative

    def uploaded(self, relative: str) -> Path:
        return self.upload_root / relative


def _fingerprints(port: int) -> list[str]:
    scan = run(["ssh-keyscan", "-p", str(port), HOST], timeout=30)
    listed = run(["ssh-keygen", "-lf", "-"], stdin=scan.stdout, timeout=30)
    return [line.split()[1] for line in listed.stdout.splitlines()]


@pytest.fixture(scope="module")
def servers(gateway, keys, tmp_path_factory) -> Iterator[dict[str, Server]]:
    """One ssftp and one sshd for the whole module."""
    made = {"ssftp": Server(
        "ssftp", Target(gateway.port, "partner-a", keys.partner.private_path),
        Target(gateway.port, "consumer-a", keys.consumer.private_path),
        gateway.layout.staging / "partner-a", gateway.layout.clean / "partner-a",
        _fingerprints(gateway.port))}
    made["ssftp"].download_root.mkdir(parents=True, exist_ok=True)
    sshd = None
    if sshd_available():
        directory = tmp_path_factory.mktemp("sshd")
        sshd = OpenSshServer.start(directory, sftp_root=directory / "root",
                                   authorized_keys=[keys.partner.public_line])
        target = Target(sshd.port, sshd.username, keys.partner.private_path)
        made["openssh"] = Server("openssh", target, target, sshd.sftp_root, sshd.sftp_root,
                                 [sshd.fingerprint])
    yield made
    if sshd is not None:
        sshd.stop()


# -- clients: each operation as the client's own command ------------------------------------


class Client:
    """One client's way to do each operation; an operation it lacks is None. Every call
    returns what the client printed and its exit status (Python clients: 0, or 1 and the
    error)."""

    program = ""

    def __init__(self, server: Server, workdir: Path) -> None:
        self.server, self.workdir = server, workdir

    def upload(self, local: Path, remote: str) -> Run:
        raise NotImplementedError

    def download(self, remote: str, local: Path) -> Run:
        raise NotImplementedError

    def listing(self, remote: str) -> Run:
        raise NotImplementedError

    mkdir: Callable[[Client, str], Run] | None = None
    upload_tree: Callable[[Client, Path, str], Run] | None = None
    upload_keeping_mtime: Callable[[Client, Path, str], Run] | None = None
    # The client's own temp-name convention: bytes to a temp name, then a rename.
    upload_via_temp_name: Callable[[Client, Path, str], Run] | None = None
    # Continue an upload that an earlier session left at part of the file.
    resume: Callable[[Client, Path, str], Run] | None = None


class OpenSSHSftp(Client):
    program = "sftp"

    def _batch(self, target: Target, commands: list[str]) -> Run:
        result = run_sftp(target.port, target.user, commands, cwd=self.workdir,
                          key=target.key)
        return Run(result.returncode, result.stdout, result.stderr)

    def upload(self, local, remote):
        return self._batch(self.server.uploader, [f"put {local} {remote}"])

    def download(self, remote, local):
        return self._batch(self.server.downloader, [f"get {remote} {local}"])

    def listing(self, remote):
        return self._batch(self.server.downloader, [f"ls -1 {remote}"])

    def mkdir(self, remote):
        return self._batch(self.server.uploader, [f"mkdir {remote}"])

    def upload_tree(self, local, remote):
        return self._batch(self.server.uploader, [f"put -r {local} {remote}"])

    def upload_keeping_mtime(self, local, remote):
        return self._batch(self.server.uploader, [f"put -p {local} {remote}"])

    def upload_via_temp_name(self, local, remote):
        """WinSCP's convention, by hand: ``NAME.filepart``, then a rename."""
        return self._batch(self.server.uploader, [f"put {local} {remote}.filepart",
                                                  f"rename {remote}.filepart {remote}"])

    def resume(self, local, remote):
        return self._batch(self.server.uploader, [f"reput {local} {remote}"])


class Scp(Client):
    program = "scp"

    def _scp(self, target: Target, *args: str) -> Run:
        return run([*scp_args(target), *args], cwd=self.workdir)

    def _remote(self, target: Target, path: str) -> str:
        return f"{target.user}@{HOST}:{path}"

    def upload(self, local, remote):
        return self._scp(self.server.uploader, str(local),
                         self._remote(self.server.uploader, remote))

    def download(self, remote, local):
        return self._scp(self.server.downloader,
                         self._remote(self.server.downloader, remote), str(local))

    listing = None  # scp lists nothing

    def upload_tree(self, local, remote):
        return self._scp(self.server.uploader, "-r", str(local),
                         self._remote(self.server.uploader, remote))

    def upload_keeping_mtime(self, local, remote):
        return self._scp(self.server.uploader, "-p", str(local),
                         self._remote(self.server.uploader, remote))


class Lftp(Client):
    program = "lftp"

    def _lftp(self, target: Target, commands: list[str]) -> Run:
        connect = (f"ssh -a -x -F /dev/null -o StrictHostKeyChecking=no "
                   f"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -i {target.key}")
        script = "; ".join([f"set sftp:connect-program {shlex.quote(connect)}",
                            "set net:max-retries 1", "set cmd:fail-exit yes",
                            f"open -u {target.user}, -p {target.port} sftp://{HOST}",
                            *commands])
        return run(["lftp", "-c", script], cwd=self.workdir)

    def upload(self, local, remote):
        return self._lftp(self.server.uploader, [f"put {local} -o {remote}"])

    def download(self, remote, local):
        return self._lftp(self.server.downloader, [f"get {remote} -o {local}"])

    def listing(self, remote):
        return self._lftp(self.server.downloader, [f"cls -1 {remote}/"])

    def mkdir(self, remote):
        return self._lftp(self.server.uploader, [f"mkdir {remote}"])

    def upload_tree(self, local, remote):
        return self._lftp(self.server.uploader, [f"mirror -R {local} {remote}"])

    def upload_via_temp_name(self, local, remote):
        return self._lftp(self.server.uploader, ["set xfer:use-temp-file yes",
                                                 f"put {local} -o {remote}"])

    def resume(self, local, remote):
        return self._lftp(self.server.uploader, [f"put -c {local} -o {remote}"])


class Rclone(Client):
    program = "rclone"

    def upload(self, local, remote):
        return rclone(["copyto", str(local), rclone_remote(self.server.uploader, remote)],
                      cwd=self.workdir)

    def download(self, remote, local):
        return rclone(["copyto", rclone_remote(self.server.downloader, remote), str(local)],
                      cwd=self.workdir)

    def listing(self, remote):
        return rclone(["lsf", rclone_remote(self.server.downloader, remote)],
                      cwd=self.workdir)

    def mkdir(self, remote):
        return rclone(["mkdir", rclone_remote(self.server.uploader, remote)],
                      cwd=self.workdir)

    def upload_tree(self, local, remote):
        return rclone(["copy", str(local), rclone_remote(self.server.uploader, remote)],
                      cwd=self.workdir)

    upload_keeping_mtime = upload  # rclone keeps mtimes by default


class Putty(Client):
    """Shared by psftp and pscp: a .ppk of the test key, the host keys given up front."""

    def _common(self, target: Target) -> list[str]:
        ppk = target.key.with_suffix(".ppk")
        if not ppk.exists():
            run(["puttygen", str(target.key), "-O", "private", "-o", str(ppk)])
        args = ["-batch", "-i", str(ppk), "-P", str(target.port)]
        for fingerprint in self.server.host_keys:
            args += ["-hostkey", fingerprint]
        return args


class Psftp(Putty):
    program = "psftp"

    def _batch(self, target: Target, commands: list[str]) -> Run:
        batch = self.workdir / f"psftp-{unique_name()}"
        batch.write_text("\n".join(commands) + "\n")
        return run(["psftp", *self._common(target), "-b", str(batch),
                    f"{target.user}@{HOST}"], cwd=self.workdir)

    def upload(self, local, remote):
        return self._batch(self.server.uploader, [f'put "{local}" "{remote}"'])

    def download(self, remote, local):
        return self._batch(self.server.downloader, [f'get "{remote}" "{local}"'])

    def listing(self, remote):
        return self._batch(self.server.downloader, [f'ls "{remote}"'])

    def mkdir(self, remote):
        return self._batch(self.server.uploader, [f'mkdir "{remote}"'])

    def upload_tree(self, local, remote):
        return self._batch(self.server.uploader, [f'put -r "{local}" "{remote}"'])

    upload_keeping_mtime = None  # psftp's put has no -p (pscp -p has)

    def upload_via_temp_name(self, local, remote):
        return self._batch(self.server.uploader, [f'put "{local}" "{remote}.filepart"',
                                                  f'mv "{remote}.filepart" "{remote}"'])

    def resume(self, local, remote):
        return self._batch(self.server.uploader, [f'reput "{local}" "{remote}"'])


class Pscp(Putty):
    program = "pscp"

    def _pscp(self, target: Target, *args: str) -> Run:
        return run(["pscp", *self._common(target), "-sftp", *args], cwd=self.workdir)

    def upload(self, local, remote):
        target = self.server.uploader
        return self._pscp(target, str(local), f"{target.user}@{HOST}:{remote}")

    def download(self, remote, local):
        target = self.server.downloader
        return self._pscp(target, f"{target.user}@{HOST}:{remote}", str(local))

    def listing(self, remote):
        target = self.server.downloader
        return self._pscp(target, "-ls", f"{target.user}@{HOST}:{remote}")

    def upload_tree(self, local, remote):
        """Into the home: pscp -r copies into a directory that exists (``local`` has the
        remote's name)."""
        assert local.name == remote
        target = self.server.uploader
        return self._pscp(target, "-r", str(local), f"{target.user}@{HOST}:")

    def upload_keeping_mtime(self, local, remote):
        target = self.server.uploader
        return self._pscp(target, "-p", str(local), f"{target.user}@{HOST}:{remote}")


class Curl(Client):
    program = "curl"

    def _curl(self, target: Target, path: str, *args: str) -> Run:
        public = target.key.with_name(target.key.name + ".pub")
        return run(["curl", "-sS", "--fail", "--insecure", "-u", f"{target.user}:",
                    "--key", str(target.key), "--pubkey", str(public), *args,
                    f"sftp://{HOST}:{target.port}/~/{path}"], cwd=self.workdir)

    def upload(self, local, remote):
        return self._curl(self.server.uploader, remote, "-T", str(local))

    def download(self, remote, local):
        return self._curl(self.server.downloader, remote, "-o", str(local))

    def listing(self, remote):
        return self._curl(self.server.downloader, f"{remote}/", "--list-only")

    def mkdir(self, remote):
        return self._curl(self.server.uploader, "", "-Q", f"mkdir {remote}")

    def resume(self, local, remote):
        return self._curl(self.server.uploader, remote, "-C", "-", "-T", str(local))


class Sshfs(Client):
    program = "sshfs"

    def _mounted(self, target: Target, action: Callable[[Path], Run]) -> Run:
        mount = self.workdir / f"mnt-{unique_name()}"
        mount.mkdir()
        options = ",".join([f"IdentityFile={target.key}", "StrictHostKeyChecking=no",
                            "UserKnownHostsFile=/dev/null", "BatchMode=yes",
                            "IdentitiesOnly=yes", f"port={target.port}"])
        mounted = run(["sshfs", "-o", options, f"{target.user}@{HOST}:", str(mount)],
                      timeout=60)
        if mounted.returncode != 0:
            return mounted
        try:
            return action(mount)
        finally:
            run(["fusermount", "-u", "-z", str(mount)], timeout=60)

    def upload(self, local, remote):
        return self._mounted(self.server.uploader,
                             lambda mount: run(["cp", str(local), str(mount / remote)]))

    def download(self, remote, local):
        return self._mounted(self.server.downloader,
                             lambda mount: run(["cp", str(mount / remote), str(local)]))

    def listing(self, remote):
        return self._mounted(self.server.downloader,
                             lambda mount: run(["ls", "-1", str(mount / remote)]))

    def mkdir(self, remote):
        return self._mounted(self.server.uploader,
                             lambda mount: run(["mkdir", str(mount / remote)]))

    def upload_tree(self, local, remote):
        return self._mounted(self.server.uploader,
                             lambda mount: run(["cp", "-r", str(local), str(mount / remote)]))

    def upload_keeping_mtime(self, local, remote):
        return self._mounted(self.server.uploader,
                             lambda mount: run(["cp", "-p", str(local), str(mount / remote)]))


def _python_call(call: Callable[[], object]) -> Run:
    try:
        shown = call()
    except (OSError, asyncssh.Error, paramiko.SSHException) as exc:
        return Run(1, "", f"{type(exc).__name__}: {exc}")
    return Run(0, "\n".join(shown) if isinstance(shown, list) else "", "")


class Paramiko(Client):
    def _sftp(self, target: Target, action: Callable[[paramiko.SFTPClient], object]) -> Run:
        def call() -> object:
            with paramiko.Transport((HOST, target.port)) as transport:
                transport.connect(username=target.user,
                                  pkey=paramiko.PKey.from_path(target.key))
                sftp = paramiko.SFTPClient.from_transport(transport)
                assert sftp is not None
                with sftp:
                    return action(sftp)
        return _python_call(call)

    def upload(self, local, remote):
        return self._sftp(self.server.uploader, lambda sftp: sftp.put(str(local), remote))

    def download(self, remote, local):
        return self._sftp(self.server.downloader, lambda sftp: sftp.get(remote, str(local)))

    def listing(self, remote):
        return self._sftp(self.server.downloader, lambda sftp: sftp.listdir(remote))

    def mkdir(self, remote):
        return self._sftp(self.server.uploader, lambda sftp: sftp.mkdir(remote))

    def upload_keeping_mtime(self, local, remote):
        """paramiko has no preserve: its users set the times by path after the put."""
        times = (local.stat().st_atime, local.stat().st_mtime)
        return self._sftp(self.server.uploader,
                          lambda sftp: (sftp.put(str(local), remote), sftp.utime(remote, times)))

    def upload_via_temp_name(self, local, remote):
        return self._sftp(self.server.uploader,
                          lambda sftp: (sftp.put(str(local), f"{remote}.filepart"),
                                        sftp.rename(f"{remote}.filepart", remote)))

    def resume(self, local, remote):
        """An append of what the server does not have yet (what paramiko users write;
        "r+" would open for reading too, which a staging account may not)."""
        def append(sftp: paramiko.SFTPClient) -> None:
            offset = sftp.stat(remote).st_size or 0
            with sftp.open(remote, "a") as handle:
                handle.write(local.read_bytes()[offset:])
        return self._sftp(self.server.uploader, append)


class Asyncssh(Client):
    def _sftp(self, target: Target, action: Callable[[asyncssh.SFTPClient], object]) -> Run:
        async def session() -> object:
            async with asyncssh.connect(HOST, target.port, username=target.user,
                                        client_keys=[target.key], known_hosts=None,
                                        config=[], agent_path=None) as conn, \
                    conn.start_sftp_client() as sftp:
                return await action(sftp)  # type: ignore[misc]
        return _python_call(lambda: asyncio.run(session()))

    def upload(self, local, remote):
        return self._sftp(self.server.uploader, lambda sftp: sftp.put(local, remote))

    def download(self, remote, local):
        return self._sftp(self.server.downloader, lambda sftp: sftp.get(remote, local))

    def listing(self, remote):
        return self._sftp(self.server.downloader, lambda sftp: sftp.listdir(remote))

    def mkdir(self, remote):
        return self._sftp(self.server.uploader, lambda sftp: sftp.mkdir(remote))

    def upload_tree(self, local, remote):
        return self._sftp(self.server.uploader,
                          lambda sftp: sftp.put(local, remote, recurse=True))

    def upload_keeping_mtime(self, local, remote):
        return self._sftp(self.server.uploader,
                          lambda sftp: sftp.put(local, remote, preserve=True))

    def upload_via_temp_name(self, local, remote):
        async def put_then_rename(sftp: asyncssh.SFTPClient) -> None:
            await sftp.put(local, f"{remote}.filepart")
            await sftp.rename(f"{remote}.filepart", remote)
        return self._sftp(self.server.uploader, put_then_rename)


CLIENTS: dict[str, type[Client]] = {
    "sftp": OpenSSHSftp, "scp": Scp, "lftp": Lftp, "rclone": Rclone, "psftp": Psftp,
    "pscp": Pscp, "curl": Curl, "sshfs": Sshfs, "paramiko": Paramiko, "asyncssh": Asyncssh,
}

def _why_not_here(client: str) -> str | None:
    program = CLIENTS[client].program
    if program and (reason := missing(program)):
        return reason
    if client == "sshfs" and not (os.path.exists("/dev/fuse") and shutil.which("fusermount")):
        return "sshfs needs /dev/fuse and fusermount"
    return None


def _rows(operation: str, *, optional: bool = False) -> list[object]:
    rows = []
    for server in SERVERS:
        for client, cls in CLIENTS.items():
            if optional and getattr(cls, operation) is None:
                continue
            rows.append(pytest.param(server, client, id=f"{server}-{client}"))
    return rows


@pytest.fixture
def make_client(servers, workdir) -> Callable[[str, str], Client]:
    def make(server: str, client: str) -> Client:
        if server not in servers:
            pytest.skip("OpenSSH sshd is not installed")
        if reason := _why_not_here(client):
            pytest.skip(reason)
        return CLIENTS[client](servers[server], workdir)
    return make


def _local_file(workdir: Path, name: str = "local.csv") -> Path:
    path = workdir / name
    path.write_bytes(CONTENT)
    os.utime(path, (MTIME, MTIME))
    return path


def _ok(result: Run) -> None:
    """Exit status 0 is part of every row: scripts judge a transfer by it."""
    assert result.returncode == 0, result.output


# -- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize(("server", "client"), _rows("upload"))
def test_upload(server, client, make_client, workdir):
    driver = make_client(server, client)
    remote = f"up-{client}-{unique_name()}.csv"
    _ok(driver.upload(_local_file(workdir), remote))
    assert driver.server.uploaded(remote).read_bytes() == CONTENT


@pytest.mark.parametrize(("server", "client"), _rows("download"))
def test_download(server, client, make_client, workdir):
    driver = make_client(server, client)
    remote = driver.server.place(f"down-{client}-{unique_name()}.csv")
    local = workdir / "got.csv"
    _ok(driver.download(remote, local))
    assert local.read_bytes() == CONTENT


@pytest.mark.parametrize(("server", "client"), _rows("download"))
def test_failed_download_exits_non_zero(server, client, make_client, workdir):
    driver = make_client(server, client)
    result = driver.download(f"missing-{unique_name()}.csv", workdir / "never.csv")
    assert result.returncode != 0, result.output


@pytest.mark.parametrize(("server", "client"), _rows("listing", optional=True))
def test_list(server, client, make_client):
    driver = make_client(server, client)
    directory = f"list-{client}-{unique_name()}"
    names = {"a.csv", "b c.csv"}
    for name in names:
        driver.server.place(f"{directory}/{name}")
    result = driver.listing(directory)
    _ok(result)
    for name in names:
        assert name in result.stdout, result.output


@pytest.mark.parametrize(("server", "client"), _rows("mkdir", optional=True))
def test_mkdir(server, client, make_client):
    driver = make_client(server, client)
    remote = f"dir-{client}-{unique_name()}"
    assert driver.mkdir is not None
    _ok(driver.mkdir(remote))
    assert driver.server.uploaded(remote).is_dir()


@pytest.mark.parametrize(("server", "client"), _rows("upload_tree", optional=True))
def test_recursive_upload(server, client, make_client, workdir):
    driver = make_client(server, client)
    remote = f"tree-{client}-{unique_name()}"
    tree = workdir / remote
    (tree / "sub").mkdir(parents=True)
    for relative in ("one.csv", "sub/two.csv"):
        _local_file(tree, relative)
    assert driver.upload_tree is not None
    _ok(driver.upload_tree(tree, remote))
    landed = driver.server.uploaded(remote)
    for relative in ("one.csv", "sub/two.csv"):
        assert (landed / relative).read_bytes() == CONTENT


@pytest.mark.parametrize(("server", "client"), _rows("upload_keeping_mtime", optional=True))
def test_mtime_kept(server, client, make_client, workdir):
    driver = make_client(server, client)
    remote = f"mtime-{client}-{unique_name()}.csv"
    assert driver.upload_keeping_mtime is not None
    _ok(driver.upload_keeping_mtime(_local_file(workdir), remote))
    assert driver.server.uploaded(remote).stat().st_mtime == MTIME


# What a client shows of a refusal when it cannot show the server's reason: libssh2 hands curl
# the status code only, rclone's pkg/sftp turns the status into Go's os.ErrPermission, and
# through sshfs a refusal is the kernel's EACCES. None of them shows the channel's stderr.
SHOWN_INSTEAD = {"curl": "Permission denied", "rclone": "permission denied",
                 "sshfs": "Permission denied"}


@pytest.mark.parametrize(("server", "client"), _rows("upload_via_temp_name", optional=True))
def test_temp_name_upload(server, client, make_client, workdir):
    driver = make_client(server, client)
    remote = f"temp-{client}-{unique_name()}.csv"
    assert driver.upload_via_temp_name is not None
    _ok(driver.upload_via_temp_name(_local_file(workdir), remote))
    assert driver.server.uploaded(remote).read_bytes() == CONTENT
    assert [p.name for p in driver.server.upload_root.iterdir() if remote in p.name] == [remote]


def _interrupt_upload(target: Target, remote: str, first: bytes) -> None:
    """Write the first bytes of ``remote`` and drop the connection without a close."""
    transport = paramiko.Transport((HOST, target.port))
    transport.connect(username=target.user, pkey=paramiko.PKey.from_path(target.key))
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None
    handle = sftp.open(remote, "w")
    handle.write(first)
    handle.flush()
    sftp.stat(".")  # a round trip: the WRITE has been answered
    transport.close()
    wait_for("the interrupted upload's size shown to a new session",
             lambda: _size_shown(target, remote) == len(first), timeout=15)


def _size_shown(target: Target, remote: str) -> int | None:
    """The size a new session sees at ``remote`` (the server settles a dropped session's
    upload after the disconnect reaches it)."""
    with paramiko.Transport((HOST, target.port)) as transport:
        transport.connect(username=target.user, pkey=paramiko.PKey.from_path(target.key))
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        try:
            return sftp.stat(remote).st_size
        except FileNotFoundError:
            return None


@pytest.mark.parametrize(("server", "client"), _rows("resume", optional=True))
def test_resume(server, client, make_client, workdir):
    driver = make_client(server, client)
    remote = f"resume-{client}-{unique_name()}.csv"
    local = _local_file(workdir)
    _interrupt_upload(driver.server.uploader, remote, CONTENT[:len(CONTENT) // 2])
    assert driver.resume is not None
    _ok(driver.resume(local, remote))
    landed = driver.server.uploaded(remote)
    assert landed.read_bytes() == CONTENT


@pytest.mark.parametrize("client", list(CLIENTS))
def test_staging_download_is_refused_with_the_reason(client, make_client, workdir):
    """On purpose: a staging account cannot download; the client shows why."""
    driver = make_client("ssftp", client)
    relative = f"staged-{client}-{unique_name()}.csv"
    driver.server.uploaded(relative).write_bytes(CONTENT)
    driver.server = replace(driver.server, downloader=driver.server.uploader)
    result = driver.download(relative, workdir / "never.csv")
    assert result.returncode != 0
    assert SHOWN_INSTEAD.get(client, "needs the 'download' permission") in result.output, \
        result.output


def test_programs_are_installed_by_bootstrap():
    """Every client of the matrix is in scripts/bootstrap.sh, so no row skips after it."""
    script = (REPO / "scripts" / "bootstrap.sh").read_text()
    for package in ("lftp", "rclone", "putty-tools", "curl", "sshfs", "openssh-client"):
        assert package in script, package
