"""The jail end to end: every path a client sends stays inside the account's root, or is
refused, tried against a real server through real clients (asyncssh, paramiko and OpenSSH's
``sftp``). Symlinks and hard links are placed on disk by the test, as an operator, another
process or a restored backup could. ``server.jail.Jail`` itself is in
tests/unit/test_server_jail.py; the jail while another writer swaps directories in
tests/integration/test_jail_race.py."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import paramiko
import pytest

from ssftp.layout import TEMP_PREFIX
from testkit.sftp_client import run_sftp
from tests.support.config import CONSUMER_PASSWORD, PARTNER_PASSWORD, PASSWORDS
from tests.support.gateway import unique_name

# -- end to end: helpers ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sftp_as(gateway, username: str) -> AsyncIterator[asyncssh.SFTPClient]:
    async with asyncssh.connect(
        "127.0.0.1", gateway.port, username=username, password=PASSWORDS[username],
        known_hosts=None, client_keys=None, agent_path=None, preferred_auth="password",
    ) as conn, conn.start_sftp_client() as sftp:
        yield sftp


@contextlib.contextmanager
def paramiko_as(gateway, username: str):
    transport = paramiko.Transport(("127.0.0.1", gateway.port))
    try:
        transport.connect(username=username, password=PASSWORDS[username])
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        try:
            yield sftp
        finally:
            sftp.close()
    finally:
        transport.close()


async def assert_denied(sftp: asyncssh.SFTPClient, awaitable) -> asyncssh.SFTPError:
    """The request is refused with SSH_FX_PERMISSION_DENIED and the connection still works."""
    with pytest.raises(asyncssh.SFTPPermissionDenied) as info:
        await awaitable
    assert (await sftp.realpath(".")) == "/"
    return info.value


async def read_remote(sftp: asyncssh.SFTPClient, path: str | bytes) -> bytes:
    async with sftp.open(path, "rb") as handle:
        return await handle.read()


def refusals(gateway) -> list[dict]:
    events = []
    log = gateway.layout.log / "ssftp.log"
    if not log.exists():
        return events
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "refused":
                events.append(entry)
    return events


def assert_refusal_logged(gateway, *, user: str, op: str, path_part: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        for entry in refusals(gateway):
            if (entry.get("user") == user and entry.get("op") == op
                    and path_part in str(entry.get("path", ""))):
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no refusal logged for {user} {op} {path_part}")
        time.sleep(0.05)


def host_paths(gateway, outside: Path) -> list[str]:
    """Strings that must never reach a client."""
    return [str(gateway.layout.root), str(outside), str(Path(os.path.realpath(outside)))]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the data root, with content no client may see."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("TOP-SECRET-OUTSIDE")
    (path / "subdir").mkdir()
    (path / "subdir" / "inner-secret.txt").write_text("TOP-SECRET-INNER")
    return path


def snapshot(directory: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(directory.rglob("*"))
    }


# -- end to end: .. and absolute paths ---------------------------------------------------------


async def test_dotdot_is_clamped_at_the_root(gateway):
    """``..`` never climbs above ``/``: a name above the jail resolves to the same name inside."""
    t = unique_name()
    clean = gateway.layout.clean
    inside = clean / "partner-a"
    (inside / f"{t}.txt").write_text("INSIDE")
    (clean / f"{t}.txt").write_text("OUTSIDE-clean-root")
    (gateway.layout.root / f"{t}.txt").write_text("OUTSIDE-data-root")
    (inside / "etc").mkdir(exist_ok=True)
    (inside / "etc" / "passwd").write_text("jailed passwd")
    (inside / f"sub-{t}").mkdir()
    async with sftp_as(gateway, "consumer-a") as sftp:
        for path in (f"../{t}.txt", f"/../{t}.txt", f"/../../{t}.txt", f"sub-{t}/../../{t}.txt",
                     f"../../../../../../{t}.txt", f"../partner-a/../{t}.txt"):
            assert await read_remote(sftp, path) == b"INSIDE", path
        for path in ("../../etc/passwd", "/../../../etc/passwd", "/etc/passwd",
                     f"sub-{t}/../../etc/passwd"):
            assert await read_remote(sftp, path) == b"jailed passwd", path
        for path in ("..", "/..", "../..", f"sub-{t}/../../.."):
            names = set(await sftp.listdir(path))
            assert f"{t}.txt" in names and f"sub-{t}" in names
            assert "partner-a" not in names  # that would be clean/ itself


async def test_dotdot_cannot_reach_other_accounts_or_areas(gateway):
    t = unique_name()
    (gateway.layout.staging / "partner-b" / f"{t}.txt").write_text("partner-b data")
    (gateway.layout.clean / "partner-a" / f"{t}-clean.txt").write_text("clean data")
    (gateway.layout.system / f"{t}-system.txt").write_text("system data")
    async with sftp_as(gateway, "partner-a") as sftp:
        for path in (f"../partner-b/{t}.txt", f"/../partner-b/{t}.txt",
                     f"../../staging/partner-b/{t}.txt",
                     f"../../clean/partner-a/{t}-clean.txt", f"../../system/{t}-system.txt",
                     f"/../../../system/{t}-system.txt"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
        for path in ("../partner-b", "../../clean", "../../system"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.listdir(path)
        assert (await sftp.realpath(".")) == "/"


async def test_absolute_host_paths_are_virtual(gateway):
    """A client naming a real host path (even the real data dir) gets that path inside its jail."""
    t = unique_name()
    real_file = gateway.layout.clean / "partner-a" / f"{t}.txt"
    real_file.write_text("exists on the host")
    async with sftp_as(gateway, "consumer-a") as sftp:
        for path in (str(real_file), str(real_file.parent), str(gateway.layout.root),
                     str(gateway.layout.system), "/proc/self/environ", "/usr/bin",
                     str(Path.home())):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await read_remote(sftp, path)
        # The same file under its virtual name is there.
        assert await read_remote(sftp, f"/{t}.txt") == b"exists on the host"


async def test_realpath_of_root_aliases_is_slash(gateway):
    async with sftp_as(gateway, "partner-a") as sftp:
        for path in (".", "/", "..", "/..", "../..", "/../../..", "./.", "//", "."):
            assert await sftp.realpath(path) == "/", path
    with paramiko_as(gateway, "consumer-a") as client:
        for path in (".", "/", "..", "../../.."):
            assert client.normalize(path) == "/"
        assert client.getcwd() is None or client.getcwd() == "/"
        client.chdir("..")
        assert client.getcwd() == "/"


def test_openssh_pwd_and_cd_dotdot_show_slash(gateway, workdir):
    result = run_sftp(gateway.port, "consumer-a", ["pwd", "cd ../../..", "pwd", "cd /..", "pwd"],
                      cwd=workdir, password=CONSUMER_PASSWORD)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "working directory" in line]
    assert lines == ["Remote working directory: /"] * 3
    assert str(gateway.layout.root) not in result.stdout + result.stderr


# -- end to end: symlinks placed on disk -----------------------------------------------------


@pytest.fixture
def consumer_links(gateway, outside):
    """Links in consumer-a's jail (clean/partner-a/links-<t>/) pointing out, one each way."""
    t = unique_name()
    directory = gateway.layout.clean / "partner-a" / f"links-{t}"
    directory.mkdir()
    evil_sibling = gateway.layout.clean / f"partner-a-evil-{t}"
    evil_sibling.mkdir()
    (evil_sibling / "evil.txt").write_text("TOP-SECRET-SIBLING")
    (gateway.layout.clean / "partner-b").mkdir(exist_ok=True)
    (gateway.layout.clean / "partner-b" / f"b-{t}.txt").write_text("TOP-SECRET-PARTNER-B")
    links = {
        "file-abs": outside / "secret.txt",
        "file-rel": Path(os.path.relpath(outside / "secret.txt", directory)),
        "dir-abs": outside,
        "dir-rel": Path(os.path.relpath(outside, directory)),
        "etc-passwd": Path("/etc/passwd"),
        "host-root": Path("/"),
        "system-area": gateway.layout.system,
        "clean-area": Path("../.."),  # clean/ itself, above the jail
        "sibling-prefix": Path(f"../../partner-a-evil-{t}/evil.txt"),
        "other-partner": Path(f"../../partner-b/b-{t}.txt"),
        "dangling-out": outside / "not-there-yet.txt",
    }
    for name, target in links.items():
        (directory / name).symlink_to(target)
    (directory / "real.txt").write_text("INSIDE-CONTENT")
    (directory / "in-rel").symlink_to("real.txt")
    (directory / "in-abs").symlink_to(directory / "real.txt")
    (directory / "in-dir").symlink_to("..")  # the jail root itself
    return f"/links-{t}", directory, links


FILE_LINKS = ("file-abs", "file-rel", "etc-passwd", "sibling-prefix", "other-partner")
DIR_LINKS = ("dir-abs", "dir-rel", "host-root", "system-area", "clean-area")


async def test_symlinks_out_cannot_be_read(gateway, outside, consumer_links):
    virtual, _, _ = consumer_links
    async with sftp_as(gateway, "consumer-a") as sftp:
        for name in (*FILE_LINKS, "dangling-out"):
            error = await assert_denied(sftp, read_remote(sftp, f"{virtual}/{name}"))
            for host in host_paths(gateway, outside):
                assert host not in str(error.reason)
            await assert_denied(sftp, sftp.stat(f"{virtual}/{name}"))
        for name in ("dir-abs", "dir-rel"):
            await assert_denied(sftp, read_remote(sftp, f"{virtual}/{name}/secret.txt"))
            await assert_denied(
                sftp, read_remote(sftp, f"{virtual}/{name}/subdir/inner-secret.txt"))
        await assert_denied(sftp, read_remote(sftp, f"{virtual}/host-root/etc/passwd"))
    assert_refusal_logged(gateway, user="consumer-a", op="open", path_part=f"{virtual}/file-abs")


async def test_symlinked_directories_out_cannot_be_listed(gateway, outside, consumer_links):
    virtual, _, _ = consumer_links
    async with sftp_as(gateway, "consumer-a") as sftp:
        for name in DIR_LINKS:
            await assert_denied(sftp, sftp.listdir(f"{virtual}/{name}"))
            await assert_denied(sftp, sftp.listdir(f"{virtual}/{name}/"))
            await assert_denied(sftp, sftp.stat(f"{virtual}/{name}/."))
        await assert_denied(sftp, sftp.listdir(f"{virtual}/dir-abs/subdir"))
        # Listing the directory that holds the links shows the links as links, nothing more.
        entries = {entry.filename: entry for entry in await sftp.readdir(virtual)}
        assert "secret.txt" not in entries and "subdir" not in entries
        for name in (*FILE_LINKS, *DIR_LINKS):
            assert stat.S_ISLNK(entries[name].attrs.permissions), name
            for host in host_paths(gateway, outside):
                assert host not in entries[name].longname
        # lstat describes the link itself.
        attrs = await sftp.lstat(f"{virtual}/file-abs")
        assert stat.S_ISLNK(attrs.permissions)
    assert_refusal_logged(gateway, user="consumer-a", op="list", path_part=f"{virtual}/dir-abs")


async def test_realpath_and_readlink_never_show_host_paths(gateway, outside, consumer_links):
    virtual, directory, _ = consumer_links
    async with sftp_as(gateway, "consumer-a") as sftp:
        for name in (*FILE_LINKS, *DIR_LINKS, "dangling-out"):
            for call in (sftp.realpath, sftp.readlink):
                try:
                    shown = await call(f"{virtual}/{name}")
                except asyncssh.SFTPPermissionDenied:
                    continue
                pytest.fail(f"{call.__name__}({name}) answered {shown!r}")
        # Links that stay inside resolve to virtual paths.
        assert await sftp.realpath(f"{virtual}/in-rel") == f"{virtual}/real.txt"
        assert await sftp.realpath(f"{virtual}/in-abs") == f"{virtual}/real.txt"
        assert await sftp.readlink(f"{virtual}/in-abs") == f"{virtual}/real.txt"
        assert await sftp.realpath(f"{virtual}/in-dir") == "/"
        # ``..`` is lexical: it never climbs through a link (so never above the link's target).
        assert await sftp.realpath(f"{virtual}/in-dir/..") == virtual
        assert await read_remote(sftp, f"{virtual}/in-rel") == b"INSIDE-CONTENT"
        assert await read_remote(sftp, f"{virtual}/in-dir/{directory.name}/in-abs") \
            == b"INSIDE-CONTENT"
    with paramiko_as(gateway, "consumer-a") as client:
        for name in ("file-abs", "dir-rel", "host-root", "clean-area"):
            with pytest.raises(PermissionError):
                client.normalize(f"{virtual}/{name}")
        assert client.normalize(f"{virtual}/in-rel") == f"{virtual}/real.txt"
    # The first refusal of a kind on a connection is logged with its path (the rest counted).
    assert_refusal_logged(gateway, user="consumer-a", op="realpath",
                          path_part=f"{virtual}/file-abs")
    assert_refusal_logged(gateway, user="consumer-a", op="readlink",
                          path_part=f"{virtual}/file-abs")


async def test_openssh_client_cannot_follow_symlinks_out(gateway, outside, consumer_links, workdir):
    virtual, _, _ = consumer_links
    result = run_sftp(gateway.port, "consumer-a",
                      [f"-get {virtual}/file-abs got-file",
                       f"-get {virtual}/dir-rel/secret.txt got2",
                       f"-ls {virtual}/dir-abs", f"-cd {virtual}/host-root", "pwd",
                       f"ls -l {virtual}"],
                      cwd=workdir, password=CONSUMER_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert not (workdir / "got-file").exists() and not (workdir / "got2").exists()
    output = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                       if not line.startswith("sftp>"))  # the echoed commands
    assert "TOP-SECRET" not in output
    # Nothing from inside the outside directory is listed (the echoed get names secret.txt).
    assert "subdir" not in output and "inner-secret" not in output
    for host in host_paths(gateway, outside):
        assert host not in output
    assert "Remote working directory: /\n" in result.stdout
    assert "Permission denied" in result.stderr


@pytest.fixture
def staging_links(gateway, outside):
    """Links in partner-a's jail (staging/partner-a/w-<t>/) pointing out."""
    t = unique_name()
    directory = gateway.layout.staging / "partner-a" / f"w-{t}"
    directory.mkdir()
    (directory / "dir-abs").symlink_to(outside)
    (directory / "dir-rel").symlink_to(os.path.relpath(outside, directory))
    (directory / "file-abs").symlink_to(outside / "secret.txt")
    (directory / "file-rel").symlink_to(os.path.relpath(outside / "secret.txt", directory))
    (directory / "dangling-abs").symlink_to(outside / "planted.txt")
    (directory / "dangling-rel").symlink_to(os.path.relpath(outside / "planted2.txt", directory))
    (directory / "to-partner-b").symlink_to("../../partner-b")
    return f"/w-{t}", directory


async def test_writing_through_symlinks_out_is_refused(gateway, outside, staging_links):
    virtual, _ = staging_links
    before = snapshot(outside)
    partner_b = snapshot(gateway.layout.staging / "partner-b")
    async with sftp_as(gateway, "partner-a") as sftp:
        for target in ("dir-abs/new.txt", "dir-rel/new.txt", "dir-abs/subdir/new.txt",
                       "file-abs", "file-rel", "dangling-abs", "dangling-rel",
                       "to-partner-b/new.txt", "dir-abs/new.txt.filepart"):
            path = f"{virtual}/{target}"
            for mode in ("wb", "ab", "xb"):
                async def put(path=path, mode=mode) -> None:
                    async with sftp.open(path, mode) as handle:
                        await handle.write(b"PLANTED")
                await assert_denied(sftp, put())
        await assert_denied(sftp, sftp.mkdir(f"{virtual}/dir-abs/made-dir"))
        await assert_denied(sftp, sftp.mkdir(f"{virtual}/dir-rel/made-dir"))
        await assert_denied(sftp, sftp.setstat(f"{virtual}/file-abs",
                                               asyncssh.SFTPAttrs(size=0)))
        await assert_denied(sftp, sftp.setstat(f"{virtual}/file-rel",
                                               asyncssh.SFTPAttrs(atime=1, mtime=1)))
        await assert_denied(sftp, sftp.setstat(f"{virtual}/dir-abs/secret.txt",
                                               asyncssh.SFTPAttrs(permissions=0o777)))
        # lsetstat@openssh.com (acts on the link itself) is not served at all.
        await assert_denied(sftp, sftp.setstat(f"{virtual}/file-abs",
                                               asyncssh.SFTPAttrs(atime=1, mtime=1),
                                               follow_symlinks=False))
        # Finishing an upload (allowed for a .filepart) must not move it out through a link.
        async with sftp.open(f"{virtual}/mine.bin.filepart", "wb") as handle:
            await handle.write(b"partial")
        for destination in ("dir-abs/mine.bin", "dir-rel/mine.bin", "to-partner-b/mine.bin"):
            await assert_denied(sftp, sftp.rename(f"{virtual}/mine.bin.filepart",
                                                  f"{virtual}/{destination}"))
            await assert_denied(sftp, sftp.posix_rename(f"{virtual}/mine.bin.filepart",
                                                        f"{virtual}/{destination}"))
    assert snapshot(outside) == before
    assert snapshot(gateway.layout.staging / "partner-b") == partner_b
    assert (outside / "secret.txt").read_text() == "TOP-SECRET-OUTSIDE"
    assert oct(stat.S_IMODE((outside / "secret.txt").stat().st_mode)) != "0o777"
    assert (outside / "secret.txt").stat().st_mtime > 1
    assert_refusal_logged(gateway, user="partner-a", op="open", path_part=f"{virtual}/dir-abs/new")
    assert_refusal_logged(gateway, user="partner-a", op="rename",
                          path_part=f"{virtual}/mine.bin.filepart")


async def test_removing_a_symlink_out_removes_only_the_link(gateway, outside, consumer_links):
    """clean-admin may delete: the link goes, the target it points to stays."""
    virtual, directory, _ = consumer_links
    admin_virtual = f"/partner-a{virtual}"
    async with sftp_as(gateway, "clean-admin") as sftp:
        await assert_denied(sftp, sftp.remove(f"{admin_virtual}/dir-abs/secret.txt"))
        await assert_denied(sftp, sftp.rmdir(f"{admin_virtual}/dir-abs/subdir"))
        await sftp.remove(f"{admin_virtual}/file-abs")
        await sftp.remove(f"{admin_virtual}/dir-rel")
        with pytest.raises(asyncssh.SFTPError):
            await sftp.rmdir(f"{admin_virtual}/dir-abs")  # a link, not a directory
    assert not (directory / "file-abs").is_symlink()
    assert not (directory / "dir-rel").is_symlink()
    assert (outside / "secret.txt").read_text() == "TOP-SECRET-OUTSIDE"
    assert (outside / "subdir" / "inner-secret.txt").exists()
    assert outside.is_dir()
    assert_refusal_logged(gateway, user="clean-admin", op="remove",
                          path_part=f"{admin_virtual}/dir-abs/secret.txt")


# -- end to end: creating links --------------------------------------------------------------


async def test_clients_cannot_create_symlinks_or_hard_links(gateway):
    t = unique_name()
    root = gateway.layout.staging / "partner-a"
    (root / f"target-{t}.txt").write_text("mine")
    async with sftp_as(gateway, "partner-a") as sftp:
        for target in (f"target-{t}.txt", "/etc/passwd", "../partner-b", "/"):
            await assert_denied(sftp, sftp.symlink(target, f"sym-{t}"))
        await assert_denied(sftp, sftp.link(f"target-{t}.txt", f"hard-{t}"))  # hardlink@openssh
        await assert_denied(sftp, sftp.link("/etc/passwd", f"hard2-{t}"))
    async with sftp_as(gateway, "clean-admin") as sftp:
        await assert_denied(sftp, sftp.symlink("/", f"admin-sym-{t}"))
        await assert_denied(sftp, sftp.link("/", f"admin-hard-{t}"))
    assert not any(p.name.startswith(("sym-", "hard")) and t in p.name for p in root.iterdir())
    assert not (gateway.layout.clean / f"admin-sym-{t}").exists()
    assert_refusal_logged(gateway, user="partner-a", op="symlink", path_part=f"sym-{t}")
    assert_refusal_logged(gateway, user="partner-a", op="link", path_part=f"hard-{t}")


def test_paramiko_cannot_create_symlinks(gateway):
    t = unique_name()
    with paramiko_as(gateway, "partner-a") as client:
        with pytest.raises(PermissionError):
            client.symlink("/etc/passwd", f"pm-sym-{t}")
        assert client.normalize(".") == "/"
    assert not (gateway.layout.staging / "partner-a" / f"pm-sym-{t}").is_symlink()


def test_openssh_client_cannot_create_links(gateway, workdir):
    t = unique_name()
    (workdir / f"up-{t}.txt").write_text("upload")
    result = run_sftp(gateway.port, "partner-a",
                      [f"put up-{t}.txt", f"-ln -s up-{t}.txt ossh-sym-{t}",
                       f"-ln up-{t}.txt ossh-hard-{t}", f"-symlink /etc ossh-etc-{t}", "ls"],
                      cwd=workdir, password=PARTNER_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Permission denied") == 3, result.stderr
    names = {p.name for p in (gateway.layout.staging / "partner-a").iterdir()}
    assert f"up-{t}.txt" in names
    assert not {f"ossh-sym-{t}", f"ossh-hard-{t}", f"ossh-etc-{t}"} & names


# -- end to end: hard links placed on disk -----------------------------------------------------


async def test_file_with_a_second_hard_link_cannot_be_opened(gateway, outside):
    t = unique_name()
    root = gateway.layout.clean / "partner-a"
    outside_file = outside / f"hl-{t}.txt"
    outside_file.write_text("TOP-SECRET-HARDLINKED")
    os.link(outside_file, root / f"hl-out-{t}.txt")
    (root / f"hl-in-{t}.txt").write_text("two names inside")
    os.link(root / f"hl-in-{t}.txt", root / f"hl-in2-{t}.txt")
    assert (root / f"hl-out-{t}.txt").stat().st_nlink == 2
    async with sftp_as(gateway, "consumer-a") as sftp:
        for name in (f"hl-out-{t}.txt", f"hl-in-{t}.txt", f"hl-in2-{t}.txt"):
            await assert_denied(sftp, read_remote(sftp, name))
    async with sftp_as(gateway, "clean-admin") as sftp:
        await assert_denied(sftp, read_remote(sftp, f"partner-a/hl-out-{t}.txt"))
        # Deleting the alias is fine and leaves the outside file alone.
        await sftp.remove(f"partner-a/hl-out-{t}.txt")
    assert outside_file.read_text() == "TOP-SECRET-HARDLINKED"
    assert outside_file.stat().st_nlink == 1
    assert_refusal_logged(gateway, user="consumer-a", op="open", path_part=f"hl-out-{t}.txt")


async def test_resuming_onto_a_hard_linked_partial_upload_is_refused(gateway, outside):
    """Appending to ``x.filepart`` copies its content first; an alias of an outside file must
    not be copied (and so become readable or scannable) that way."""
    t = unique_name()
    outside_file = outside / f"hl-{t}.bin"
    outside_file.write_text("TOP-SECRET-HARDLINKED")
    staged = gateway.layout.staging / "partner-a" / f"resume-{t}.bin.filepart"
    os.link(outside_file, staged)
    async with sftp_as(gateway, "partner-a") as sftp:
        async def append() -> None:
            async with sftp.open(staged.name, "ab") as handle:
                await handle.write(b"more")
        await assert_denied(sftp, append())
    assert outside_file.read_text() == "TOP-SECRET-HARDLINKED"
    assert not [p for p in staged.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]


# -- end to end: reserved names and bad bytes ---------------------------------------------------


async def test_temp_names_are_not_addressable(gateway):
    t = unique_name()
    clean_root = gateway.layout.clean / "partner-a"
    hidden = clean_root / f"{TEMP_PREFIX}{t}"
    hidden.write_text("in progress")
    async with sftp_as(gateway, "consumer-a") as sftp:
        assert hidden.name not in await sftp.listdir("/")
        await assert_denied(sftp, read_remote(sftp, hidden.name))
        await assert_denied(sftp, sftp.stat(hidden.name))
        await assert_denied(sftp, sftp.lstat(f"/sub/../{hidden.name}"))
    async with sftp_as(gateway, "clean-admin") as sftp:
        await assert_denied(sftp, sftp.remove(f"partner-a/{hidden.name}"))
    assert hidden.read_text() == "in progress"
    staging_root = gateway.layout.staging / "partner-a"
    async with sftp_as(gateway, "partner-a") as sftp:
        async def put(name: str) -> None:
            async with sftp.open(name, "wb") as handle:
                await handle.write(b"x")
        await assert_denied(sftp, put(f"{TEMP_PREFIX}{t}"))
        await assert_denied(sftp, put(f"{TEMP_PREFIX}{t}-dir/file.txt"))
        await assert_denied(sftp, sftp.mkdir(f"{TEMP_PREFIX}{t}-dir"))
        async with sftp.open(f"tmpname-{t}.filepart", "wb") as handle:
            await handle.write(b"partial")
        await assert_denied(sftp, sftp.rename(f"tmpname-{t}.filepart", f"{TEMP_PREFIX}{t}x"))
    assert not [p for p in staging_root.iterdir()
                if p.name.startswith(TEMP_PREFIX) and t in p.name]
    assert_refusal_logged(gateway, user="consumer-a", op="open", path_part=hidden.name)


async def test_invalid_utf8_and_nul_paths_are_refused(gateway):
    t = unique_name().encode()
    staging_root = gateway.layout.staging / "partner-a"
    before = set(os.listdir(os.fsencode(staging_root)))
    async with sftp_as(gateway, "partner-a") as sftp:
        for path in (b"bad-\xff\xfe-" + t, b"\xc3(" + t, b"ok-" + t + b"\x00.txt",
                     b"\x00", b"dir\x00/../x"):
            async def put(path=path) -> None:
                async with sftp.open(path, "wb") as handle:
                    await handle.write(b"x")
            await assert_denied(sftp, put())
            await assert_denied(sftp, sftp.mkdir(path))
            await assert_denied(sftp, sftp.stat(path))
            await assert_denied(sftp, sftp.realpath(path))
    assert set(os.listdir(os.fsencode(staging_root))) == before
    with paramiko_as(gateway, "consumer-a") as client:
        with pytest.raises(PermissionError):
            client.stat(b"\xff\xfe")
        with pytest.raises(PermissionError):
            client.open(b"x\x00y", "rb")
        assert client.normalize(".") == "/"
    assert_refusal_logged(gateway, user="partner-a", op="open", path_part="bad-")
