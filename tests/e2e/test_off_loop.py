"""A hung filesystem ties up only the sessions that touch it (issue 12, item 3).

Under one account's root is an ``sshfs`` mount of a local sshd; SIGSTOP on that sshd makes every
call that reaches the mount hang, as on a dead NFS server. While one session is stuck in a stat,
a listing or a read there, other sessions (another account, and the same account outside the
mount) log in, list and download; once the sshd goes on, the stuck request is answered too.
Everything is real: the server, the asyncssh clients, sshd, sshfs and the kernel's FUSE.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh
import pytest

from testkit.openssh_server import OpenSshServer, sshd_available
from testkit.processes import process_tree
from testkit.sftp_client import make_client_key
from testkit.ssftp_process import SsftpProcess
from tests.support.config import write_config
from tests.support.gateway import ServerThread, unique_name
from tests.support.sftp import connect

PASSWORD = "off-loop-secret-pw"
DEADLINE = 30.0  # generous: the work it bounds takes well under a second when nothing hangs
PAYLOAD = b"answered while another session hangs\n"
T = TypeVar("T")
CONFIG = f"""
    sftpPort: 0
    users:
      cleanDir:
        - directory: reader-a
          auth:
            username: reader-a
            password: {PASSWORD}
        - directory: reader-b
          auth:
            username: reader-b
            password: {PASSWORD}
        - directory: reader-c
          auth:
            username: reader-c
            password: {PASSWORD}
      stagingDir:
        - directory: writer-a
          auth:
            username: writer-a
            password: {PASSWORD}
    """  # download accounts, each with its own root (reader-c's is a mount point itself),
# and an upload account


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("off-loop")
    gateway = ServerThread(write_config(root / "ssftp.yaml", CONFIG), root / "data")
    yield gateway
    gateway.stop()


# Where the kernel has a thread wait for a FUSE daemon: for its answer to a request (stat,
# open, readdir), for a page that a read request is filling (older kernels: on_page), or for
# the connection to take a request at all (fuse_get_req: the daemon has more requests in
# hand than it may, or has not answered its INIT yet; on a loaded machine a thread stuck
# there went uncounted, and the test gave up on a server that was inside the hung call).
FUSE_WAITS = frozenset({"request_wait_answer", "folio_wait_bit_common",
                        "wait_on_page_bit_common", "fuse_get_req"})


def _threads_waiting_on_fuse(pid: int | str = "self") -> int:
    """Threads of a process (this one, the server's thread among them) waiting for FUSE."""
    count = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            count += (task / "wchan").read_text() in FUSE_WAITS
    return count


def _sshfs_pid(mount_point: Path) -> int:
    """The FUSE daemon serving ``mount_point`` (sshfs goes to the background once mounted)."""
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"sshfs") and os.fsencode(mount_point) in argv:
                return int(entry)
    raise AssertionError(f"no sshfs process serving {mount_point}")


@dataclass
class HungMount:
    """An sshfs mount whose servers can be stopped (every call under it hangs) and resumed:
    the sshd, as a dead NFS server, and sshfs, as a stopped FUSE daemon (which would answer
    some requests itself: an lseek, which sshfs does not implement)."""

    path: Path  # the mount point, inside reader-a's root
    remote: Path  # the directory sshd serves: what the mount shows, written to directly
    sshd: OpenSshServer
    sshfs: int

    def _signal(self, signum: signal.Signals) -> None:
        for pid in [*process_tree(self.sshd.process.pid), self.sshfs]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def hang(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)


@pytest.fixture
def hung_mount(server: ServerThread, tmp_path: Path) -> Iterator[HungMount]:
    with _hung_mount(server.layout.clean / "reader-a", tmp_path) as mount:
        yield mount


@contextlib.contextmanager
def _hung_mount(account_root: Path, tmp_path: Path, *,
                at_root: bool = False) -> Iterator[HungMount]:
    """A mount in ``account_root``, or (``at_root``) on it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a FUSE filesystem needs root")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: FUSE is not available here")
    if shutil.which("sshfs") is None or shutil.which("fusermount") is None:
        pytest.skip("sshfs is not installed (Debian package sshfs)")
    if not sshd_available():
        pytest.skip("OpenSSH sshd is not installed")
    remote = tmp_path / "remote"
    remote.mkdir(parents=True)
    mount_point = account_root if at_root else account_root / f"share-{unique_name()}"
    mount_point.mkdir(parents=True, exist_ok=at_root)
    key = make_client_key(tmp_path, "sshfs")
    with OpenSshServer.start(tmp_path / "sshd", authorized_keys=[key.public_line],
                             sftp_root=remote) as sshd:
        subprocess.run(
            ["sshfs", f"{sshd.username}@{sshd.host}:{remote}", str(mount_point),
             "-p", str(sshd.port), "-o", f"IdentityFile={key.private_path},BatchMode=yes,"
             "StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null"],
            check=True, timeout=DEADLINE, capture_output=True)
        mount = HungMount(mount_point, remote, sshd, _sshfs_pid(mount_point))
        # Answered once before any hang: sshfs goes to the background before the kernel's
        # INIT is answered, and a daemon stopped before that holds every call in
        # fuse_get_req rather than in the request the test means to hang. A statfs, which
        # always reaches the daemon and leaves nothing cached that a test lists or reads.
        os.statvfs(mount_point)
        try:
            yield mount
        finally:
            mount.resume()
            subprocess.run(["fusermount", "-u", "-z", str(mount_point)], check=True)
            if not at_root:
                mount_point.rmdir()


def _place_plain_files(server: ServerThread) -> None:
    """What :func:`_others_work` lists and downloads."""
    for root in ("reader-a/outside", "reader-b"):
        (server.layout.clean / root).mkdir(parents=True, exist_ok=True)
        (server.layout.clean / root / "plain.txt").write_bytes(PAYLOAD)


async def _others_work(server: ServerThread) -> None:
    """What must go on while one session hangs: another account, and the hung session's own
    account outside the mount, log in, list and download."""
    for user, directory in (("reader-b", "/"), ("reader-a", "/outside")):
        async with connect(server.port, user, PASSWORD) as conn, \
                conn.start_sftp_client() as sftp:
            assert "plain.txt" in await sftp.listdir(directory)
            async with sftp.open(f"{directory.rstrip('/')}/plain.txt", "rb") as file:
                assert await file.read() == PAYLOAD


async def _within(work: Awaitable[T], what: str) -> T:
    """``work``, or a clear failure at the deadline (which only turns a hang into one)."""
    try:
        return await asyncio.wait_for(work, DEADLINE)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what} after {DEADLINE:.0f} s") from None


async def _until(condition: Callable[[], object], what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)
    await _within(poll(), what)


async def _read(file: asyncssh.SFTPClientFile | None) -> bytes:
    assert file is not None
    return await file.read()


async def _ranges(file: asyncssh.SFTPClientFile | None) -> list[tuple[int, int]]:
    """Where the file has data: asyncssh's ranges extension, which its clients' get() asks."""
    assert file is not None
    return [extent async for extent in file.request_ranges(0, len(PAYLOAD))]


@pytest.mark.parametrize("operation", ["stat", "listing", "read"])
def test_a_hung_filesystem_ties_up_only_its_session(
        server: ServerThread, hung_mount: HungMount, operation: str) -> None:
    _place_plain_files(server)
    (hung_mount.remote / "hung.txt").write_bytes(PAYLOAD)  # never seen through the mount yet
    (hung_mount.remote / "folder").mkdir()
    (hung_mount.remote / "folder" / "inside.txt").write_bytes(PAYLOAD)
    hung = f"/{hung_mount.path.name}/hung.txt"

    async def scenario() -> None:
        async with connect(server.port, "reader-a", PASSWORD) as conn, \
                conn.start_sftp_client() as stuck:
            opened = await stuck.open(hung, "rb") if operation == "read" else None
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "stat": lambda: stuck.stat(hung),
                "listing": lambda: stuck.listdir(f"/{hung_mount.path.name}/folder"),
                "read": lambda: _read(opened),
            }
            assert _threads_waiting_on_fuse() == 0
            hung_mount.hang()
            try:
                pending = asyncio.ensure_future(calls[operation]())
                await _until(lambda: _threads_waiting_on_fuse() or pending.done(),
                             "the server to be inside the hung call")
                assert not pending.done()
                await _within(_others_work(server), "the other sessions")
                assert not pending.done()  # still hung: the others were served meanwhile
            finally:
                hung_mount.resume()
            result = await _within(pending, "the hung call once its filesystem is back")
            if operation == "stat":
                assert isinstance(result, asyncssh.SFTPAttrs) and result.size == len(PAYLOAD)
            elif operation == "listing":
                assert isinstance(result, list) and "inside.txt" in result
            else:
                assert result == PAYLOAD

    asyncio.run(scenario())


def test_an_account_whose_root_hangs_ties_up_only_its_own_session(
        server: ServerThread, tmp_path: Path) -> None:
    """The login of an account whose root is on the hung filesystem: creating and resolving
    the root ran on the event loop at login, so every session hung with it."""
    _place_plain_files(server)
    with _hung_mount(server.layout.clean / "reader-c", tmp_path, at_root=True) as mount:
        (mount.remote / "inside.txt").write_bytes(PAYLOAD)

        async def stuck_session() -> list[str]:
            async with connect(server.port, "reader-c", PASSWORD) as conn, \
                    conn.start_sftp_client() as sftp:
                return await sftp.listdir("/")

        async def scenario() -> None:
            mount.hang()
            try:
                stuck = asyncio.ensure_future(stuck_session())
                await _until(lambda: _threads_waiting_on_fuse() or stuck.done(),
                             "the server to be inside the hung call")
                await _within(_others_work(server), "the other sessions")
                assert not stuck.done()
            finally:
                mount.resume()
            assert "inside.txt" in await _within(stuck, "the session once its root is back")

        asyncio.run(scenario())


def test_writes_to_a_hung_filesystem_tie_up_only_their_session_and_are_all_kept(
        server: ServerThread, tmp_path: Path) -> None:
    """An upload's first WRITEs are answered before they reach the disk (server.off_loop),
    the rest once written: while the share hangs, the upload's session waits, the other
    sessions go on, and once the share is back every byte is written, in order."""
    _place_plain_files(server)
    content = os.urandom(4 << 20)
    chunk = 64 << 10
    with _hung_mount(server.layout.staging / "writer-a", tmp_path) as mount:
        virtual = f"/{mount.path.name}/up.bin"

        async def scenario() -> None:
            async with connect(server.port, "writer-a", PASSWORD) as conn, \
                    conn.start_sftp_client() as sftp:
                file = await sftp.open(virtual, "wb")

                async def write_all() -> None:
                    for offset in range(0, len(content), chunk):
                        await file.write(content[offset:offset + chunk], offset)

                mount.hang()
                try:
                    writing = asyncio.ensure_future(write_all())
                    await _until(lambda: _threads_waiting_on_fuse() or writing.done(),
                                 "the server to be inside the hung write")
                    await _within(_others_work(server), "the other sessions")
                    assert not writing.done()  # 4 MiB is more than may be held for it
                finally:
                    mount.resume()
                await _within(writing, "the writes once the share is back")
                await _within(file.close(), "the close")

        asyncio.run(scenario())
        assert (mount.remote / "up.bin").read_bytes() == content


def test_ranges_are_answered_without_the_filesystem(
        server: ServerThread, hung_mount: HungMount) -> None:
    """asyncssh runs the ranges extension (where a file has data, which its clients' get()
    asks first) on the event loop, through the handle's seek: an lseek there would hang every
    session. Answered without the filesystem instead: at once while it hangs, all data."""
    _place_plain_files(server)
    (hung_mount.remote / "hung.txt").write_bytes(PAYLOAD)

    async def scenario() -> None:
        async with connect(server.port, "reader-a", PASSWORD) as conn, \
                conn.start_sftp_client() as sftp:
            file = await sftp.open(f"/{hung_mount.path.name}/hung.txt", "rb")
            hung_mount.hang()
            try:
                assert await _within(_ranges(file), "the ranges") == [(0, len(PAYLOAD))]
                await _within(_others_work(server), "the other sessions")
            finally:
                hung_mount.resume()
            await file.close()

    asyncio.run(scenario())


def test_downloads_read_ahead_answer_every_read_with_the_file_s_bytes(server: ServerThread) -> None:
    """Reads are answered from the block read ahead when they can be (server: one trip off
    the loop per several READs): whole files in order, many requests in flight, two files
    interleaved in one session, jumps back and forth, short reads at the end and past it."""
    names = {f"ahead-{unique_name()}.bin": size for size in (5 * 1024 * 1024 + 7, 70_001)}
    contents = {name: os.urandom(size) for name, size in names.items()}
    for name, content in contents.items():
        (server.layout.clean / "reader-a" / name).write_bytes(content)
    first, second = contents

    async def scenario() -> None:
        async with connect(server.port, "reader-a", PASSWORD) as conn, \
                conn.start_sftp_client() as sftp:
            for name, content in contents.items():  # in order, 128 requests in flight
                async with sftp.open(name, "rb", block_size=32768, max_requests=128) as file:
                    assert await file.read() == content
            async with sftp.open(first, "rb") as one, sftp.open(second, "rb") as two:
                for offset, size in ((0, 65536), (65536, 65536), (10, 100), (131072, 4096),
                                     (1 << 20, 300_000), (len(contents[first]) - 5, 100),
                                     (len(contents[first]) + 10, 100), (0, 1)):
                    await one.seek(offset)
                    assert await one.read(size) == contents[first][offset:offset + size]
                    await two.seek(offset % 70_001)
                    assert await two.read(size) == \
                        contents[second][offset % 70_001:offset % 70_001 + size]

    asyncio.run(scenario())


def _has_exited(server: SsftpProcess) -> bool:
    """The server's process has ended, or all of it but the thread in the hung call: its main
    thread has exited (a zombie), and the kernel holds the process only until the FUSE
    request that thread sent is answered (a request the daemon has read cannot be given up:
    seen in 1 of 12 runs, the thread in request_wait_answer, D state). Either way nothing of
    ssftp runs."""
    if server.process.poll() is not None:
        return True
    try:
        state = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_the_server_stops_while_a_call_hangs(tmp_path: Path) -> None:
    """Ctrl-C stops ``ssftp serve`` while a session's call hangs on a dead share: the
    session's thread does not hold the process (a ThreadPoolExecutor's would: its threads
    are joined at exit, and this one returns only when the share does)."""
    config = write_config(tmp_path / "ssftp.yaml", CONFIG)
    server = SsftpProcess.start("serve", tmp_path, config, tmp_path / "data")
    try:
        with _hung_mount(server.layout.clean / "reader-a", tmp_path / "mount") as mount:
            (mount.remote / "hung.txt").write_bytes(PAYLOAD)

            async def scenario() -> None:
                async with connect(server.port, "reader-a", PASSWORD) as conn, \
                        conn.start_sftp_client() as sftp:
                    mount.hang()
                    pending = asyncio.ensure_future(sftp.stat(f"/{mount.path.name}/hung.txt"))
                    await _until(lambda: _threads_waiting_on_fuse(server.pid) or pending.done(),
                                 "the server to be inside the hung call")
                    assert not pending.done()
                    os.killpg(server.pid, signal.SIGINT)
                    await _until(lambda: _has_exited(server), "the server to stop")
                    mount.resume()  # the kernel's hold on a zombie's sockets ends with it
                    with pytest.raises(asyncssh.Error):
                        await _within(pending, "the stat to end with its connection")

            asyncio.run(scenario())
    finally:
        server.stop()
