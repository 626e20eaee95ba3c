"""Interoperability: three real SFTP clients against a real ssftp server on 127.0.0.1.

Every scenario runs with OpenSSH ``sftp`` (batch mode), paramiko and asyncssh's client:
logins (password, ed25519, ecdsa and RSA keys, and refusals), put/ls/mkdir/get, a consumer
downloading from ``clean/`` (the test plays the scanner and moves the file there), a 256 MiB
round trip, WinSCP's ``.filepart`` upload-then-rename, and a rename of an upload after its close.

Each client is wrapped in a small synchronous adapter (:class:`Session`) so the scenarios are
written once; the adapters only translate calls, every byte goes through the real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import paramiko
import pytest

from testkit.files import make_random_file, sha256_file
from testkit.sftp_client import SFTP, run_sftp
from tests.support.config import CONSUMER_PASSWORD, PARTNER_PASSWORD
from tests.support.gateway import unique_name
from tests.support.logs import wait_for_log

CLIENTS = ("openssh", "paramiko", "asyncssh")
LARGE_SIZE = 256 * 1024 * 1024
TEMP_PREFIX = ".ssftp-tmp-"
SHA2_RSA = {"rsa-sha2-256", "rsa-sha2-512"}


def unique(stem: str, suffix: str = ".bin") -> str:
    return f"{stem}-{unique_name()}{suffix}"


def awkward_name(stem: str) -> str:
    """A file name with spaces, ':' and non-ASCII characters (no glob characters, which
    OpenSSH's sftp would expand)."""
    return f"{stem} Q1: rapport ünïcødé ✓ 東京 {unique_name()}.csv"


# -- credentials and client adapters -------------------------------------------------------


@dataclass(frozen=True)
class Login:
    user: str
    password: str | None = None
    key: Path | None = None


class Session:
    """What the scenarios need from a logged-in SFTP client. Paths are relative to the
    account's home. A refusal by the server raises PermissionError."""

    def put(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def listdir(self, path: str = ".") -> list[str]:
        raise NotImplementedError

    def mkdir(self, path: str) -> None:
        raise NotImplementedError

    def rename(self, old: str, new: str) -> None:
        raise NotImplementedError


def _quote(arg: str) -> str:
    """Quote one argument for an ``sftp -b`` batch file."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


class OpenSSHSession(Session):
    """Each call is one ``sftp -b`` run: the real OpenSSH client, one connection per call."""

    def __init__(self, port: int, login: Login, cwd: Path) -> None:
        self.port, self.login, self.cwd = port, login, cwd

    def run(self, commands: list[str]) -> str:
        result = run_sftp(self.port, self.login.user, commands, cwd=self.cwd,
                          key=self.login.key, password=self.login.password)
        if result.returncode != 0:
            message = f"sftp {commands} failed ({result.returncode}): {result.stderr.strip()}"
            if "Permission denied" in result.stderr:
                raise PermissionError(message)
            raise OSError(message)
        return result.stdout

    def put(self, local: Path, remote: str) -> None:
        self.run([f"put {_quote(str(local))} {_quote(remote)}"])

    def get(self, remote: str, local: Path) -> None:
        self.run([f"get {_quote(remote)} {_quote(str(local))}"])

    def listdir(self, path: str = ".") -> list[str]:
        stdout = self.run([f"cd {_quote(path)}", "ls -1a"])
        names = [line for line in stdout.splitlines() if line and not line.startswith("sftp>")]
        return [name for name in names if name not in (".", "..")]

    def mkdir(self, path: str) -> None:
        self.run([f"mkdir {_quote(path)}"])

    def rename(self, old: str, new: str) -> None:
        self.run([f"rename {_quote(old)} {_quote(new)}"])


class ParamikoSession(Session):
    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp

    def put(self, local: Path, remote: str) -> None:
        self.sftp.put(str(local), remote)  # pipelined writes, then a confirming stat

    def get(self, remote: str, local: Path) -> None:
        self.sftp.get(remote, str(local))  # prefetch on, as by default

    def listdir(self, path: str = ".") -> list[str]:
        return self.sftp.listdir(path)

    def mkdir(self, path: str) -> None:
        self.sftp.mkdir(path)

    def rename(self, old: str, new: str) -> None:
        self.sftp.rename(old, new)  # SSH_FXP_RENAME, as WinSCP sends it


class AsyncsshSession(Session):
    """asyncssh's SFTP client on a private event loop, driven synchronously."""

    def __init__(self, runner: asyncio.Runner, sftp: asyncssh.SFTPClient) -> None:
        self.runner, self.sftp = runner, sftp

    def _call(self, coroutine):
        try:
            return self.runner.run(coroutine)
        except asyncssh.SFTPPermissionDenied as exc:
            raise PermissionError(exc.reason) from exc
        except asyncssh.SFTPError as exc:
            raise OSError(exc.reason) from exc

    def put(self, local: Path, remote: str) -> None:
        self._call(self.sftp.put(local, remote))

    def get(self, remote: str, local: Path) -> None:
        self._call(self.sftp.get(remote, local))

    def listdir(self, path: str = ".") -> list[str]:
        names = self._call(self.sftp.listdir(path))
        return [name for name in names if name not in (".", "..")]

    def mkdir(self, path: str) -> None:
        self._call(self.sftp.mkdir(path))

    def rename(self, old: str, new: str) -> None:
        self._call(self.sftp.rename(old, new))  # SSH_FXP_RENAME


def _paramiko_transport(port: int, login: Login) -> paramiko.Transport:
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        if login.key is not None:
            transport.connect(username=login.user, pkey=paramiko.PKey.from_path(login.key))
        else:
            transport.connect(username=login.user, password=login.password)
    except BaseException:
        transport.close()
        raise
    return transport


async def _asyncssh_connect(port: int, login: Login, **options) -> asyncssh.SSHClientConnection:
    if login.key is not None:
        auth = {"client_keys": options.pop("client_keys", [login.key]),
                "preferred_auth": "publickey"}
    else:
        auth = {"client_keys": None, "password": login.password, "preferred_auth": "password"}
    return await asyncssh.connect("127.0.0.1", port, username=login.user, known_hosts=None,
                                  config=[], agent_path=None, **auth, **options)


async def _start_sftp(conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
    return await conn.start_sftp_client()


@contextlib.contextmanager
def connect(client: str, gateway, login: Login, cwd: Path) -> Iterator[Session]:
    if client == "openssh":
        yield OpenSSHSession(gateway.port, login, cwd)
    elif client == "paramiko":
        transport = _paramiko_transport(gateway.port, login)
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            with sftp:
                yield ParamikoSession(sftp)
        finally:
            transport.close()
    elif client == "asyncssh":
        with asyncio.Runner() as runner:
            conn = runner.run(_asyncssh_connect(gateway.port, login))
            try:
                sftp = runner.run(_start_sftp(conn))
                try:
                    yield AsyncsshSession(runner, sftp)
                finally:
                    sftp.exit()
                    runner.run(sftp.wait_closed())
            finally:
                conn.close()
                runner.run(conn.wait_closed())
    else:  # pragma: no cover
        raise ValueError(client)


class LoginRefused(Exception):
    pass


def check_login(client: str, gateway, login: Login, cwd: Path) -> None:
    """Log in and run one harmless request; LoginRefused if authentication fails."""
    if client == "openssh":
        result = run_sftp(gateway.port, login.user, ["pwd"], cwd=cwd, key=login.key,
                          password=login.password, timeout=60)
        if result.returncode != 0:
            assert "Permission denied" in result.stderr, result.stderr
            raise LoginRefused(result.stderr)
        assert "Remote working directory: /" in result.stdout, result.stdout
        return
    try:
        with connect(client, gateway, login, cwd) as session:
            assert isinstance(session.listdir("."), list)
    except (paramiko.AuthenticationException, asyncssh.PermissionDenied) as exc:
        raise LoginRefused(str(exc)) from exc


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(params=CLIENTS)
def client(request, monkeypatch) -> str:
    if request.param == "openssh":
        if SFTP is None:
            pytest.fail("OpenSSH sftp client is not installed")
        # sftp prints non-ASCII names as octal escapes unless the locale is UTF-8.
        monkeypatch.setenv("LC_ALL", "C.UTF-8")
    return request.param


@pytest.fixture
def partner(keys) -> Login:
    return Login("partner-a", key=keys.partner.private_path)


@pytest.fixture
def consumer(keys) -> Login:
    return Login("consumer-a", key=keys.consumer.private_path)


@pytest.fixture(scope="module")
def large_file(tmp_path_factory) -> tuple[Path, str]:
    path = make_random_file(tmp_path_factory.mktemp("large") / "large.bin", LARGE_SIZE)
    return path, sha256_file(path)


def staged(gateway, relative: str) -> Path:
    return gateway.layout.staging / "partner-a" / relative


def play_scanner(gateway, relative: str) -> Path:
    """What the scan flow will do for a clean verdict: move staging/partner-a/X to
    clean/partner-a/X (same filesystem, so a rename)."""
    source = staged(gateway, relative)
    target = gateway.layout.clean / "partner-a" / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, target)
    return target


def write_local(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


# -- logins ------------------------------------------------------------------------------------


LOGINS = {
    "partner-password": ("partner-a", "password"),
    "partner-ed25519": ("partner-a", "partner"),
    "consumer-password": ("consumer-a", "password"),
    "consumer-ecdsa": ("consumer-a", "consumer"),
}


@pytest.mark.parametrize("which", list(LOGINS))
def test_login_succeeds(client, gateway, keys, workdir, which):
    user, credential = LOGINS[which]
    if credential == "password":
        password = PARTNER_PASSWORD if user == "partner-a" else CONSUMER_PASSWORD
        login = Login(user, password=password)
    else:
        login = Login(user, key=getattr(keys, credential).private_path)
    check_login(client, gateway, login, workdir)


def test_wrong_password_is_refused(client, gateway, workdir):
    with pytest.raises(LoginRefused):
        check_login(client, gateway, Login("partner-a", password="not-the-password"), workdir)
    # The same client gets in with the right password: the refusal was about the password.
    check_login(client, gateway, Login("partner-a", password=PARTNER_PASSWORD), workdir)


def test_unknown_key_is_refused(client, gateway, keys, workdir):
    with pytest.raises(LoginRefused):
        check_login(client, gateway, Login("partner-a", key=keys.stranger.private_path),
                    workdir)
    check_login(client, gateway, Login("partner-a", key=keys.partner.private_path), workdir)


def test_rsa_key_login_uses_sha2_signature(client, gateway, keys, workdir):
    """The RSA key logs in, and the signature is rsa-sha2-256/512, never ssh-rsa (SHA-1)."""
    key = keys.partner_rsa.private_path
    if client == "openssh":
        result = subprocess.run(
            [SFTP, "-F", "/dev/null", "-P", str(gateway.port), "-vvv",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key),
             "-o", "PreferredAuthentications=publickey", "-b", "-", "partner-a@127.0.0.1"],
            input="pwd\n", capture_output=True, text=True, timeout=60, cwd=workdir)
        assert result.returncode == 0, result.stderr
        signed = [line for line in result.stderr.splitlines() if "signing using" in line]
        assert signed, result.stderr
        assert all(line.split("signing using ")[1].split()[0] in SHA2_RSA for line in signed), \
            signed
    elif client == "paramiko":
        transport = _paramiko_transport(gateway.port, Login("partner-a", key=key))
        try:
            assert transport.is_authenticated()
            assert transport._agreed_pubkey_algorithm in SHA2_RSA
        finally:
            transport.close()
    else:
        keypairs = asyncssh.load_keypairs(key)

        async def login() -> None:
            login = Login("partner-a", key=key)
            async with (await _asyncssh_connect(gateway.port, login,
                                                client_keys=keypairs) as conn,
                        conn.start_sftp_client() as sftp):
                assert await sftp.getcwd() == "/"

        asyncio.run(login())
        assert keypairs[0].sig_algorithm.decode() in SHA2_RSA


def test_openssh_client_restricted_to_ssh_rsa_cannot_log_in(gateway, keys, workdir):
    """Server-sig-algs has no ssh-rsa, so an OpenSSH client allowed only SHA-1 gives up."""
    result = subprocess.run(
        [SFTP, "-F", "/dev/null", "-P", str(gateway.port),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "PubkeyAcceptedAlgorithms=ssh-rsa",
         "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-i", str(keys.partner_rsa.private_path), "-o", "PreferredAuthentications=publickey",
         "-b", "-", "partner-a@127.0.0.1"],
        input="pwd\n", capture_output=True, text=True, timeout=60, cwd=workdir)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr, result.stderr


def test_ssh_rsa_sha1_signature_is_refused(gateway, keys):
    """A client that signs with ssh-rsa (SHA-1) anyway must be refused by the server itself,
    and the log says why (before: a failed login like any other, even at debug).

    asyncssh's client, told to use only ``ssh-rsa``, ignores server-sig-algs and sends a
    SHA-1 signature; the server offers no SHA-1 algorithm and must not accept it."""
    keypairs = asyncssh.load_keypairs(keys.partner_rsa.private_path)
    login = Login("partner-a", key=keys.partner_rsa.private_path)

    async def attempt() -> None:
        conn = await _asyncssh_connect(gateway.port, login, client_keys=keypairs,
                                       signature_algs=["ssh-rsa"])
        conn.close()
        await conn.wait_closed()

    try:
        asyncio.run(attempt())
    except asyncssh.PermissionDenied:
        line = wait_for_log(gateway.layout.log, lambda entry: entry.get("event") == "login"
                            and "ssh-rsa (SHA-1) not accepted" in entry.get("reason", ""))
        assert (line["user"], line["ok"], line["method"]) == ("partner-a", False, "publickey")
        assert line["key"].startswith("SHA256:")
        return
    assert keypairs[0].sig_algorithm == b"ssh-rsa"  # the client really signed with SHA-1
    pytest.fail("server accepted an ssh-rsa (SHA-1) signature for partner-a's RSA key")


# -- put, ls, mkdir, get -------------------------------------------------------------------


def test_put_and_list_hides_temp_names(client, gateway, partner, workdir):
    directory = unique(f"ls-{client}", "")
    content = os.urandom(4096)
    name = awkward_name(f"listed {client}")
    local = write_local(workdir, "local-upload.csv", content)
    with connect(client, gateway, partner, workdir) as session:
        session.mkdir(directory)
        # Another upload in progress in the same directory, as the server writes it.
        staged(gateway, directory).joinpath(f"{TEMP_PREFIX}0123456789abcdef").write_bytes(b"x")
        session.put(local, f"{directory}/{name}")
        names = session.listdir(directory)
    assert name in names
    assert not [n for n in names if n.startswith(TEMP_PREFIX)], names
    assert staged(gateway, f"{directory}/{name}").read_bytes() == content


def test_root_listing_shows_upload_and_no_temp_names(client, gateway, partner, workdir):
    name = unique(f"root-listed-{client}", ".txt")
    local = write_local(workdir, "root.txt", b"root listing\n")
    staged(gateway, f"{TEMP_PREFIX}{unique_name()}").write_bytes(b"in progress")
    with connect(client, gateway, partner, workdir) as session:
        session.put(local, name)
        names = session.listdir(".")
    assert name in names
    assert not [n for n in names if n.startswith(TEMP_PREFIX)], names


def test_nested_mkdir_upload_keeps_sub_path(client, gateway, partner, consumer, workdir):
    top = unique(f"nested-{client}", "")
    sub = f"{top}/deeper dir/ünï"
    name = awkward_name("nested")
    content = os.urandom(70_000)
    local = write_local(workdir, "nested-local.bin", content)
    with connect(client, gateway, partner, workdir) as session:
        session.mkdir(top)
        session.mkdir(f"{top}/deeper dir")
        session.mkdir(sub)
        session.put(local, f"{sub}/{name}")
        assert name in session.listdir(sub)
    on_disk = staged(gateway, f"{sub}/{name}")
    assert on_disk.is_file()
    assert on_disk.read_bytes() == content
    # The sub path survives the move to clean/ and the consumer sees it under the same path.
    play_scanner(gateway, f"{sub}/{name}")
    fetched = workdir / "nested-fetched.bin"
    with connect(client, gateway, consumer, workdir) as session:
        session.get(f"{sub}/{name}", fetched)
    assert fetched.read_bytes() == content


def test_partner_cannot_get_from_staging(client, gateway, partner, workdir):
    """Staging accounts have no 'download': their own upload is not readable back."""
    name = unique(f"noget-{client}", ".txt")
    local = write_local(workdir, "noget.txt", b"secret until scanned\n")
    with connect(client, gateway, partner, workdir) as session:
        session.put(local, name)
        with pytest.raises(PermissionError):
            session.get(name, workdir / "noget-back.txt")
    assert staged(gateway, name).read_bytes() == b"secret until scanned\n"


def test_consumer_gets_clean_file(client, gateway, partner, consumer, workdir):
    name = awkward_name(f"clean {client}")
    content = os.urandom(300_000)
    local = write_local(workdir, "to-clean.bin", content)
    with connect(client, gateway, partner, workdir) as session:
        session.put(local, name)
    assert sha256_file(staged(gateway, name)) == sha256_file(local)
    play_scanner(gateway, name)
    fetched = workdir / "fetched.bin"
    with connect(client, gateway, consumer, workdir) as session:
        assert name in session.listdir(".")
        session.get(name, fetched)
    assert sha256_file(fetched) == sha256_file(local)


def test_consumer_password_login_gets_clean_file(client, gateway, partner, workdir):
    name = unique(f"clean-pw-{client}", ".txt")
    local = write_local(workdir, "clean-pw.txt", b"downloaded with a password\n")
    with connect(client, gateway, partner, workdir) as session:
        session.put(local, name)
    play_scanner(gateway, name)
    fetched = workdir / "clean-pw-back.txt"
    with connect(client, gateway, Login("consumer-a", password=CONSUMER_PASSWORD),
                 workdir) as session:
        session.get(name, fetched)
    assert fetched.read_bytes() == b"downloaded with a password\n"


# -- a large round trip ------------------------------------------------------------------------


@pytest.mark.slow
def test_large_file_round_trip(client, gateway, partner, consumer, workdir, large_file):
    source, digest = large_file
    name = unique(f"large-{client}")
    started = time.monotonic()
    with connect(client, gateway, partner, workdir) as session:
        session.put(source, name)
    uploaded = time.monotonic()
    assert staged(gateway, name).stat().st_size == LARGE_SIZE
    clean = play_scanner(gateway, name)
    fetched = workdir / "large-fetched.bin"
    downloaded_from = time.monotonic()
    with connect(client, gateway, consumer, workdir) as session:
        session.get(name, fetched)
    finished = time.monotonic()
    try:
        assert fetched.stat().st_size == LARGE_SIZE
        assert sha256_file(fetched) == digest
    finally:
        fetched.unlink(missing_ok=True)
        clean.unlink(missing_ok=True)
    mib = LARGE_SIZE / (1 << 20)
    print(f"\n{client}: 256 MiB put {uploaded - started:.1f} s "
          f"({mib / (uploaded - started):.0f} MiB/s), get {finished - downloaded_from:.1f} s "
          f"({mib / (finished - downloaded_from):.0f} MiB/s)")


# -- WinSCP-style: upload to name.filepart, then rename -----------------------------------------


def test_filepart_upload_then_rename(client, gateway, partner, workdir):
    name = awkward_name(f"winscp {client}")
    content = os.urandom(200_000)
    local = write_local(workdir, "winscp.bin", content)
    with connect(client, gateway, partner, workdir) as session:
        session.put(local, f"{name}.filepart")
        assert staged(gateway, f"{name}.filepart").read_bytes() == content
        session.rename(f"{name}.filepart", name)
        names = session.listdir(".")
    assert name in names
    assert f"{name}.filepart" not in names
    assert staged(gateway, name).read_bytes() == content
    assert not staged(gateway, f"{name}.filepart").exists()
    directory = staged(gateway, ".")
    assert not [p for p in os.listdir(directory) if p.startswith(name) and p != name]


def test_filepart_rename_into_subdirectory(client, gateway, partner, workdir):
    top = unique(f"winscp-dir-{client}", "")
    name = unique("report", ".csv")
    local = write_local(workdir, "winscp-dir.csv", b"a,b\n1,2\n")
    with connect(client, gateway, partner, workdir) as session:
        session.mkdir(top)
        session.put(local, f"{top}/{name}.filepart")
        session.rename(f"{top}/{name}.filepart", f"{top}/{name}")
        assert session.listdir(top) == [name]
    assert staged(gateway, f"{top}/{name}").read_bytes() == b"a,b\n1,2\n"


def test_an_upload_renamed_after_its_close_and_refused_renames(client, gateway, partner,
                                                                workdir):
    """partner-a has no 'rename': it may rename its own upload of the last minute within its
    directory (a client that uploads to a name of its own and renames), but not a file it did
    not upload, nor turn a finished file back into an in-progress one."""
    name = unique(f"plain-{client}", ".txt")
    other = unique(f"plain-renamed-{client}", ".txt")
    dropped = unique(f"dropped-{client}", ".txt")
    staged(gateway, dropped).parent.mkdir(parents=True, exist_ok=True)
    staged(gateway, dropped).write_bytes(b"another writer's\n")
    local = write_local(workdir, "plain.txt", b"renamed by its uploader\n")
    with connect(client, gateway, partner, workdir) as session:
        session.put(local, name)
        with pytest.raises(PermissionError):
            session.rename(name, f"{other}.filepart")
        session.rename(name, other)
        with pytest.raises(PermissionError):
            session.rename(dropped, f"{dropped}.mine")
    assert staged(gateway, other).read_bytes() == b"renamed by its uploader\n"
    assert not staged(gateway, name).exists()
    assert not staged(gateway, f"{other}.filepart").exists()
    assert staged(gateway, dropped).read_bytes() == b"another writer's\n"
    assert not staged(gateway, f"{dropped}.mine").exists()


def test_filepart_cannot_replace_existing_file(client, gateway, partner, workdir):
    """Finishing a .filepart onto a name that exists would overwrite it: partner-a has no
    'overwrite', so the existing file keeps its content."""
    name = unique(f"exists-{client}", ".txt")
    first = write_local(workdir, "first.txt", b"first\n")
    second = write_local(workdir, "second.txt", b"second\n")
    with connect(client, gateway, partner, workdir) as session:
        session.put(first, name)
        session.put(second, f"{name}.filepart")
        # Refused either way: FX_FILE_ALREADY_EXISTS/FAILURE for SSH_FXP_RENAME, or
        # PERMISSION_DENIED for posix-rename (OpenSSH), which would replace the target.
        with pytest.raises(OSError):
            session.rename(f"{name}.filepart", name)
    assert staged(gateway, name).read_bytes() == b"first\n"


def test_asyncssh_posix_rename_of_filepart(gateway, partner, workdir):
    """asyncssh's posix_rename (posix-rename@openssh.com) finishes a .filepart upload too."""
    name = awkward_name("posix")
    content = os.urandom(10_000)
    local = write_local(workdir, "posix.bin", content)

    async def scenario() -> list[str]:
        async with (await _asyncssh_connect(gateway.port, partner) as conn,
                    conn.start_sftp_client() as sftp):
            await sftp.put(local, f"{name}.filepart")
            await sftp.posix_rename(f"{name}.filepart", name)
            return await sftp.listdir(".")

    names = asyncio.run(scenario())
    assert name in names
    assert f"{name}.filepart" not in names
    assert staged(gateway, name).read_bytes() == content


def test_openssh_put_with_spaces_colon_unicode(gateway, keys, workdir):
    """The local name is awkward too: OpenSSH quotes it in the batch file."""
    name = awkward_name("openssh local")
    local = write_local(workdir, name, b"awkward both ends\n")
    result = run_sftp(gateway.port, "partner-a", [f"put {_quote(name)}"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode == 0, result.stderr
    assert staged(gateway, name).read_bytes() == local.read_bytes()
