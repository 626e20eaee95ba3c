"""Downloaders and uploaders against a real OpenSSH server.

``download_files`` and ``upload_files`` are driven directly (no Prefect flow around them), each
over a session from ``open_sftp``, so what is checked is the file logic and the trust and key
handling against the server partners actually run. One sshd serves the whole module; every
test has its own remote sub-directory and its own data root, so tests do not see each other.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import asyncssh
import pytest

from client.connection import open_sftp
from client.download import download_files
from client.upload import remote_paths, upload_files
from ssftp.config.schema import Downloader, Uploader
from ssftp.errors import RemoteRefusedError, RemoteUnavailableError
from ssftp.file_stamp import FileStamp
from ssftp.layout import TEMP_PREFIX, DataLayout
from ssftp.scan.claims import Claims
from ssftp.scan.results import Area
from ssftp.scan.scanner import Scanner
from ssftp.transfer.local import Outcome, TransferResult
from ssftp.transfer.state import Delivery, Stage, TransferState
from testkit.openssh_server import OpenSshServer, free_port, sshd_available
from testkit.putty_keys import puttygen_available, to_ppk
from tests.support.config import PASSWORDS
from tests.support.gateway import unique_name
from tests.support.logs import json_lines, logging_into

pytestmark = pytest.mark.skipif(
    not sshd_available(), reason="OpenSSH server (/usr/sbin/sshd) is not installed"
)

KEY_NAME = "id_client"
CONNECT_TIMEOUT = 10.0


# -- fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientKeys:
    """Keys the module's sshd accepts; tests write them into their data root as needed."""

    ed25519: asyncssh.SSHKey
    rsa: asyncssh.SSHKey


@pytest.fixture(scope="module")
def client_keys() -> ClientKeys:
    return ClientKeys(
        ed25519=asyncssh.generate_private_key("ssh-ed25519", comment="transfers@test"),
        rsa=asyncssh.generate_private_key("ssh-rsa", key_size=2048, comment="rsa@test"),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           client_keys: ClientKeys) -> Iterator[OpenSshServer]:
    authorized = [key.export_public_key().decode().strip()
                  for key in (client_keys.ed25519, client_keys.rsa)]
    running = OpenSshServer.start(tmp_path_factory.mktemp("sshd"), authorized_keys=authorized,
                                  sftp_root=tmp_path_factory.mktemp("remote"))
    yield running
    running.stop()


@pytest.fixture
def remote(server: OpenSshServer) -> Path:
    """This test's own directory on the remote server (its SFTP path is its name)."""
    path = server.sftp_root / f"t-{unique_name()}"
    path.mkdir()
    return path



@pytest.fixture
def client_key(layout: DataLayout, client_keys: ClientKeys) -> str:
    """The ed25519 client key as ``system/id_client`` (OpenSSH format, unencrypted)."""
    path = layout.system / KEY_NAME
    client_keys.ed25519.write_private_key(path)
    path.chmod(0o600)
    return KEY_NAME


@pytest.fixture
def state(layout: DataLayout) -> Iterator[TransferState]:
    with TransferState.open(layout.system) as opened:
        yield opened


# -- helpers -------------------------------------------------------------------------------


def endpoint(server: OpenSshServer, **settings: object) -> dict[str, object]:
    """camelCase settings shared by downloaders and uploaders; pinned host key by default."""
    values: dict[str, object] = {
        "host": server.host, "port": server.port, "username": server.username,
        "hostKeyFingerprint": server.fingerprint,
    }
    values.update(settings)
    return {key: value for key, value in values.items() if value is not None}


def make_downloader(server: OpenSshServer, remote: Path | None, **settings: object) -> Downloader:
    values = endpoint(server, **{
        "name": "dl", "privateKeyPath": KEY_NAME, "localStagingDirectory": "inbox",
        "remoteDirectory": remote.name if remote else None, **settings})
    return Downloader.model_validate(values)


def make_uploader(server: OpenSshServer, remote_directory: str, **settings: object) -> Uploader:
    values = endpoint(server, **{
        "name": "up", "privatekeyPath": KEY_NAME, "localDirectoryToUpload": "outbox",
        "remoteDirectory": remote_directory, **settings})
    return Uploader.model_validate(values)


async def run_download(entry: Downloader, layout: DataLayout,
                       state: TransferState) -> list[TransferResult]:
    async with open_sftp(entry, layout.system, CONNECT_TIMEOUT) as sftp:
        return await download_files(entry, layout, state, sftp)


async def run_upload(entry: Uploader, layout: DataLayout,
                     state: TransferState) -> list[TransferResult]:
    async with open_sftp(entry, layout.system, CONNECT_TIMEOUT) as sftp:
        return await upload_files(entry, layout, state, sftp)


async def can_list(entry: Downloader | Uploader, layout: DataLayout) -> list[str]:
    async with open_sftp(entry, layout.system, CONNECT_TIMEOUT) as sftp:
        return sorted(await sftp.listdir("."))


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def moved(file: str, data: bytes, outcome: Outcome, detail: str = "") -> TransferResult:
    """The row of a file moved: its size and the sha256 of what was sent or received."""
    return TransferResult(file, len(data), outcome, detail, sha(data))


def tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` (relative posix path) with the sha256 of its content."""
    if not root.exists():
        return {}
    return {path.relative_to(root).as_posix(): sha(path.read_bytes())
            for path in sorted(root.rglob("*")) if path.is_file()}


def names_below(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def by_file(results: list[TransferResult]) -> dict[str, TransferResult]:
    rows = {row.file: row for row in results}
    assert len(rows) == len(results), f"one row per file expected: {results}"
    return rows


def no_temp_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert leftovers == []


def no_fileparts(root: Path) -> None:
    assert [p for p in root.rglob("*") if p.name.endswith(".filepart")] == []


def chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    result = subprocess.run(["chattr", flag, str(path)], capture_output=True,
                            stdin=subprocess.DEVNULL)
    return result.returncode == 0


# -- downloader ----------------------------------------------------------------------------


async def test_download_keeps_sub_directories_and_ignores_fileparts(
        server, remote, layout, client_key, state):
    a = write(remote / "a" / "x.txt", "content of a\n").read_bytes()
    b = write(remote / "b" / "x.txt", "something else in b\n").read_bytes()
    big = write(remote / "a" / "deep" / "big.bin", os.urandom(300_000)).read_bytes()
    write(remote / "c.filepart", "in progress")
    write(remote / "a" / "y.txt.filepart", "in progress too")
    entry = make_downloader(server, remote)

    with logging_into(layout.log) as audit_log:
        results = await run_download(entry, layout, state)

    assert sorted(results, key=lambda row: row.file) == [
        moved("a/deep/big.bin", big, "downloaded"),
        moved("a/x.txt", a, "downloaded"),
        moved("b/x.txt", b, "downloaded"),
    ]
    # Named in the data root, as the scan's records name files (before: host paths).
    assert sorted(record["file"] for record in json_lines(audit_log)) == [
        "staging/inbox/a/deep/big.bin", "staging/inbox/a/x.txt", "staging/inbox/b/x.txt"]
    staged = layout.staging / "inbox"
    assert tree(staged) == {"a/deep/big.bin": sha(big), "a/x.txt": sha(a), "b/x.txt": sha(b)}
    no_temp_files(layout.staging)
    # The remote side is left alone (deleteRemoteFileAfterDownload is off by default).
    assert sorted(tree(remote)) == ["a/deep/big.bin", "a/x.txt", "a/y.txt.filepart",
                                    "b/x.txt", "c.filepart"]


async def test_download_does_not_fetch_an_unchanged_file_again(
        server, remote, layout, client_key, state):
    write(remote / "a.txt", "first version")
    write(remote / "b.txt", "stays the same")
    entry = make_downloader(server, remote)
    staged = layout.staging / "inbox"

    first = await run_download(entry, layout, state)
    assert {row.file: row.outcome for row in first} == {"a.txt": "downloaded",
                                                       "b.txt": "downloaded"}
    (staged / "a.txt").unlink()  # e.g. scanned and moved on
    before = (staged / "b.txt").stat()

    second = await run_download(entry, layout, state)

    assert second == []
    assert not (staged / "a.txt").exists()
    after = (staged / "b.txt").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    changed = write(remote / "a.txt", "second version, longer").read_bytes()
    third = await run_download(entry, layout, state)

    assert third == [moved("a.txt", changed, "downloaded")]
    assert (staged / "a.txt").read_bytes() == changed
    assert (staged / "b.txt").stat().st_ino == before.st_ino
    no_temp_files(layout.staging)


async def test_download_deletes_remote_copies_and_fetches_a_new_file_of_the_same_name(
        server, remote, layout, client_key, state):
    one = write(remote / "one.txt", "first file").read_bytes()
    two = write(remote / "sub" / "two.bin", os.urandom(70_000)).read_bytes()
    entry = make_downloader(server, remote, deleteRemoteFileAfterDownload=True)
    staged = layout.staging / "inbox"

    results = await run_download(entry, layout, state)

    assert by_file(results) == {
        "one.txt": moved("one.txt", one, "downloaded", "remote copy deleted"),
        "sub/two.bin": moved("sub/two.bin", two, "downloaded",
                                      "remote copy deleted"),
    }
    assert tree(remote) == {}
    assert tree(staged) == {"one.txt": sha(one), "sub/two.bin": sha(two)}
    stamp = (staged / "one.txt").stat()

    # A new remote file of the same name, size and mtime is still a new file.
    (staged / "one.txt").unlink()
    again = write(remote / "one.txt", "FIRST FILE").read_bytes()
    assert len(again) == len(one)
    os.utime(remote / "one.txt", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

    results = await run_download(entry, layout, state)

    assert results == [moved("one.txt", again, "downloaded",
                                      "remote copy deleted")]
    assert (staged / "one.txt").read_bytes() == again
    assert tree(remote) == {}
    no_temp_files(layout.staging)


async def test_download_keeps_the_local_copy_when_the_remote_delete_fails(
        server, remote, layout, client_key, state):
    stuck = write(remote / "stuck.txt", "cannot be deleted").read_bytes()
    gone = write(remote / "gone.txt", "can be deleted").read_bytes()
    # Tests run as root, so permission bits would not stop the delete: an immutable file does.
    if not chattr("+i", remote / "stuck.txt"):
        pytest.skip("cannot make a remote file undeletable here (chattr +i failed)")
    entry = make_downloader(server, remote, deleteRemoteFileAfterDownload=True)
    staged = layout.staging / "inbox"
    try:
        results = await run_download(entry, layout, state)

        rows = by_file(results)
        assert rows["gone.txt"] == moved("gone.txt", gone, "downloaded",
                                                  "remote copy deleted")
        assert rows["stuck.txt"].outcome == "failed"
        assert rows["stuck.txt"].bytes == len(stuck)
        assert "downloaded, but the remote copy could not be deleted" in \
            rows["stuck.txt"].detail
        assert tree(staged) == {"gone.txt": sha(gone), "stuck.txt": sha(stuck)}
        assert tree(remote) == {"stuck.txt": sha(stuck)}

        # Next run: the delete is tried again, the file is not fetched again.
        (staged / "stuck.txt").unlink()
        results = await run_download(entry, layout, state)
        assert [(row.file, row.outcome) for row in results] == [("stuck.txt", "failed")]
        assert "could not be deleted" in results[0].detail
        assert not (staged / "stuck.txt").exists()
    finally:
        chattr("-i", remote / "stuck.txt")

    results = await run_download(entry, layout, state)

    assert results == [TransferResult("stuck.txt", 0, "skipped",
                                      "fetched earlier; remote copy deleted")]
    assert tree(remote) == {}
    assert not (staged / "stuck.txt").exists()
    no_temp_files(layout.staging)


async def test_download_without_override_skips_only_files_that_exist_locally(
        server, remote, layout, client_key, state):
    write(remote / "staged.txt", "remote version of staged")
    write(remote / "c" / "cleaned.txt", "remote version of cleaned")
    new = write(remote / "new.txt", "a new file").read_bytes()
    old_staged = write(layout.staging / "inbox" / "staged.txt", "old staged").read_bytes()
    old_clean = write(layout.clean / "inbox" / "c" / "cleaned.txt", "old clean").read_bytes()
    entry = make_downloader(server, remote, overrideExistingFile=False)

    results = await run_download(entry, layout, state)

    skip = "exists locally (overrideExistingFile: false)"
    assert by_file(results) == {
        "staged.txt": TransferResult("staged.txt", 0, "skipped", skip),
        "c/cleaned.txt": TransferResult("c/cleaned.txt", 0, "skipped", skip),
        "new.txt": moved("new.txt", new, "downloaded"),
    }
    assert tree(layout.staging / "inbox") == {"staged.txt": sha(old_staged),
                                              "new.txt": sha(new)}
    assert tree(layout.clean / "inbox") == {"c/cleaned.txt": sha(old_clean)}
    no_temp_files(layout.staging)

    # The same downloader with overrideExistingFile: true replaces what is staged.
    entry = make_downloader(server, remote, overrideExistingFile=True)
    results = await run_download(entry, layout, state)

    assert {row.file: row.outcome for row in results} == {"staged.txt": "downloaded",
                                                         "c/cleaned.txt": "downloaded"}
    assert tree(layout.staging / "inbox") == tree(remote)
    assert tree(layout.clean / "inbox") == {"c/cleaned.txt": sha(old_clean)}
    no_temp_files(layout.staging)


async def test_download_skips_names_reserved_for_ssftp(
        server, remote, layout, client_key, state):
    write(remote / ".ssftp-tmp-evil", "looks like our temp file")
    write(remote / ".ssftp-claims" / "x.txt", "looks like our claims dir")
    fine = write(remote / "fine.txt", "ordinary").read_bytes()
    entry = make_downloader(server, remote)

    results = await run_download(entry, layout, state)

    rows = by_file(results)
    assert rows["fine.txt"] == moved("fine.txt", fine, "downloaded")
    for name in (".ssftp-tmp-evil", ".ssftp-claims"):
        assert rows[name].outcome == "skipped"
        assert rows[name].bytes == 0
        assert "reserved" in rows[name].detail and ".ssftp-" in rows[name].detail
    assert len(rows) == 3
    assert names_below(layout.staging) == ["inbox", "inbox/fine.txt"]



async def test_download_of_a_name_that_is_not_utf8_is_staged_and_reaches_clean_under_a_safe_name(
        server, remote, layout, client_key, state, client, owners):
    """A remote server's name in Latin-1 (``caf\\xe9``, everyday on older systems) and one with
    a terminal escape. On 5b67aed the listing raised (asyncssh decodes names as strict UTF-8)
    and the run fetched nothing, not even the other files (seen failing). Each is fetched under
    its own bytes, the scanner takes it to clean/ under a safe name, and every name in the
    results is the same path Python uses for those bytes."""
    latin = os.fsdecode(b"caf\xe9.txt")
    escaped = "x\x1b]0;PWNED\x07.txt"
    data = {latin: b"latin-1 name\n", escaped: b"terminal escape\n", "plain.txt": b"plain\n"}
    for name, content in data.items():
        write(remote / name, content)
    entry = make_downloader(server, remote)

    results = await run_download(entry, layout, state)

    assert sorted(results, key=lambda row: row.file) == sorted(
        (moved(name, content, "downloaded") for name, content in data.items()),
        key=lambda row: row.file)
    scanner = Scanner(layout, client, owners=owners, instance="transfers-test",
                      claims=Claims(layout.staging))
    scanned = [scanner.scan(layout.staging / "inbox" / name, None) for name in data]
    assert [result.area if result else None for result in scanned] == [Area.CLEAN] * 3
    clean = layout.clean / "inbox"
    assert sorted(path.read_bytes() for path in clean.iterdir()) == sorted(data.values())
    assert (clean / "plain.txt").read_bytes() == b"plain\n"
    assert all(name.isprintable() for name in os.listdir(clean))
    assert list(layout.staging.joinpath("inbox").iterdir()) == []

# -- uploader ------------------------------------------------------------------------------


async def test_upload_sends_sub_directories_and_archives(
        server, remote, layout, client_key, state):
    outbox = layout.clean / "outbox"
    files = {
        "top.txt": write(outbox / "top.txt", "top level\n").read_bytes(),
        "sub/y.txt": write(outbox / "sub" / "y.txt", "one level down\n").read_bytes(),
        "sub/deep/x.bin": write(outbox / "sub" / "deep" / "x.bin",
                                os.urandom(250_000)).read_bytes(),
    }
    other = write(layout.clean / "elsewhere" / "not-mine.txt", "other directory").read_bytes()
    entry = make_uploader(server, f"{remote.name}/inbox")

    with logging_into(layout.log) as audit_log:
        results = await run_upload(entry, layout, state)

    assert sorted(results, key=lambda row: row.file) == [
        moved(f"outbox/{name}", data, "uploaded")
        for name, data in sorted(files.items())
    ]
    records = {record["file"]: record for record in json_lines(audit_log)}
    assert sorted(records) == [f"clean/outbox/{name}" for name in sorted(files)]
    assert records["clean/outbox/top.txt"]["archived"] == "uploadarchive/outbox/top.txt"
    expected = {name: sha(data) for name, data in files.items()}
    assert tree(remote / "inbox") == expected
    no_fileparts(remote)
    assert tree(layout.uploadarchive / "outbox") == expected
    assert tree(outbox) == {}
    assert tree(layout.clean / "elsewhere") == {"not-mine.txt": sha(other)}
    assert state.deliveries(entry.name) == []
    no_temp_files(layout.uploadarchive)

    # Nothing left to send.
    assert await run_upload(entry, layout, state) == []


async def test_upload_without_override_leaves_remote_files_alone(
        server, remote, layout, client_key, state):
    outbox = layout.clean / "outbox"
    remote_old = write(remote / "a.txt", "remote original").read_bytes()
    local_a = write(outbox / "a.txt", "local replacement").read_bytes()
    local_b = write(outbox / "b.txt", "brand new").read_bytes()
    entry = make_uploader(server, remote.name, overrideRemoteExistingFile=False)

    results = await run_upload(entry, layout, state)

    assert by_file(results) == {
        "outbox/a.txt": TransferResult(
            "outbox/a.txt", 0, "skipped",
            "exists on the remote server (overrideRemoteExistingFile: false)"),
        "outbox/b.txt": moved("outbox/b.txt", local_b, "uploaded"),
    }
    assert tree(remote) == {"a.txt": sha(remote_old), "b.txt": sha(local_b)}
    assert tree(outbox) == {"a.txt": sha(local_a)}
    assert tree(layout.uploadarchive) == {"outbox/b.txt": sha(local_b)}
    assert state.deliveries(entry.name) == []

    entry = make_uploader(server, remote.name, overrideRemoteExistingFile=True)
    results = await run_upload(entry, layout, state)

    assert results == [moved("outbox/a.txt", local_a, "uploaded")]
    assert tree(remote) == {"a.txt": sha(local_a), "b.txt": sha(local_b)}
    assert tree(outbox) == {}
    assert tree(layout.uploadarchive) == {"outbox/a.txt": sha(local_a),
                                          "outbox/b.txt": sha(local_b)}
    no_fileparts(remote)


def journal(state: TransferState, entry: Uploader, layout: DataLayout, sub_path: str,
            stage: Stage) -> Delivery:
    """A journal entry as a run that crashed mid-delivery would have left it."""
    temp, final = remote_paths(entry, PurePosixPath(sub_path))
    local_path = PurePosixPath(entry.local_directory_to_upload) / sub_path
    delivery = Delivery(entry.name, local_path, FileStamp.of((layout.clean / local_path).stat()),
                        temp, final, stage)
    state.save_delivery(delivery)
    return delivery


async def test_resume_publishing_with_temp_gone_archives_without_sending_again(
        server, remote, layout, client_key, state):
    data = write(layout.clean / "outbox" / "r.txt", "delivered before the crash").read_bytes()
    entry = make_uploader(server, remote.name)
    delivery = journal(state, entry, layout, "r.txt", Stage.PUBLISHING)
    # The crash came after the remote rename: only the final name exists.
    final = server.sftp_root / delivery.remote_final
    write(final, data)
    before = final.stat()
    assert not (server.sftp_root / delivery.remote_temp).exists()

    results = await run_upload(entry, layout, state)

    assert results == [moved("outbox/r.txt", data, "uploaded",
                                      "delivery finished after an interruption")]
    after = final.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert tree(remote) == {"r.txt": sha(data)}
    assert tree(layout.uploadarchive) == {"outbox/r.txt": sha(data)}
    assert tree(layout.clean) == {}
    assert state.deliveries(entry.name) == []


async def test_resume_publishing_with_temp_present_renames_it(
        server, remote, layout, client_key, state):
    data = write(layout.clean / "outbox" / "sub" / "p.bin", os.urandom(40_000)).read_bytes()
    entry = make_uploader(server, remote.name)
    delivery = journal(state, entry, layout, "sub/p.bin", Stage.PUBLISHING)
    # The crash came after the size check, before the rename: the temp file is complete.
    temp = write(server.sftp_root / delivery.remote_temp, data)
    temp_inode = temp.stat().st_ino

    results = await run_upload(entry, layout, state)

    assert results == [moved("outbox/sub/p.bin", data, "uploaded",
                                      "delivery finished after an interruption")]
    assert tree(remote) == {"sub/p.bin": sha(data)}
    # Renamed, not sent again.
    assert (remote / "sub" / "p.bin").stat().st_ino == temp_inode
    no_fileparts(remote)
    assert tree(layout.uploadarchive) == {"outbox/sub/p.bin": sha(data)}
    assert tree(layout.clean) == {}
    assert state.deliveries(entry.name) == []


async def test_resume_sending_removes_the_partial_temp_and_sends_again(
        server, remote, layout, client_key, state):
    data = write(layout.clean / "outbox" / "s.bin", os.urandom(100_000)).read_bytes()
    entry = make_uploader(server, remote.name)
    delivery = journal(state, entry, layout, "s.bin", Stage.SENDING)
    write(server.sftp_root / delivery.remote_temp, data[:30_000])

    results = await run_upload(entry, layout, state)

    assert results == [moved("outbox/s.bin", data, "uploaded")]
    assert tree(remote) == {"s.bin": sha(data)}
    no_fileparts(remote)
    assert tree(layout.uploadarchive) == {"outbox/s.bin": sha(data)}
    assert tree(layout.clean) == {}
    assert state.deliveries(entry.name) == []


async def test_resume_publishing_without_override_when_final_name_was_taken(
        server, remote, layout, client_key, state):
    data = write(layout.clean / "outbox" / "q.txt", "ours, interrupted").read_bytes()
    other = write(layout.clean / "outbox" / "other.txt", "unrelated").read_bytes()
    entry = make_uploader(server, remote.name, overrideRemoteExistingFile=False)
    delivery = journal(state, entry, layout, "q.txt", Stage.PUBLISHING)
    write(server.sftp_root / delivery.remote_temp, data)
    theirs = write(server.sftp_root / delivery.remote_final, "someone else's").read_bytes()

    results = await run_upload(entry, layout, state)

    assert by_file(results) == {
        "outbox/q.txt": TransferResult(
            "outbox/q.txt", 0, "skipped",
            "exists on the remote server (overrideRemoteExistingFile: false)"),
        "outbox/other.txt": moved("outbox/other.txt", other, "uploaded"),
    }
    assert tree(remote) == {"q.txt": sha(theirs), "other.txt": sha(other)}
    assert tree(layout.clean / "outbox") == {"q.txt": sha(data)}
    assert state.deliveries(entry.name) == []


async def test_upload_archive_keeps_an_earlier_delivery_of_the_same_name(
        server, remote, layout, client_key, state):
    earlier = write(layout.uploadarchive / "outbox" / "report.txt", "earlier").read_bytes()
    data = write(layout.clean / "outbox" / "report.txt", "today's report").read_bytes()
    entry = make_uploader(server, remote.name)

    results = await run_upload(entry, layout, state)

    assert results == [moved("outbox/report.txt", data, "uploaded")]
    assert tree(remote) == {"report.txt": sha(data)}
    assert tree(layout.uploadarchive / "outbox") == {"report.txt": sha(earlier),
                                                     "report (2).txt": sha(data)}
    assert tree(layout.clean) == {}
    no_temp_files(layout.uploadarchive)


# -- trust and keys ------------------------------------------------------------------------


async def test_wrong_host_key_in_known_hosts_is_refused(
        server, remote, layout, client_key, state):
    write(remote / "secret.txt", "must not be fetched")
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    write(layout.system / "partner_known_hosts",
          f"[{server.host}]:{server.port} {impostor.strip()}\n")
    entry = make_downloader(server, remote, knownHosts="partner_known_hosts",
                            hostKeyFingerprint=None)

    with pytest.raises(RemoteRefusedError) as caught:
        await run_download(entry, layout, state)

    message = str(caught.value)
    assert server.fingerprint in message
    assert f"{server.host}:{server.port}" in message
    assert str(layout.system / "partner_known_hosts") in message
    assert names_below(layout.staging) == []
    assert tree(remote) == {"secret.txt": sha(b"must not be fetched")}


async def test_host_key_trust_sources(server, layout, client_key):
    def entry(**settings: object) -> Downloader:
        return make_downloader(server, None, **{"hostKeyFingerprint": None, **settings})

    # Nothing configured and no system/known_hosts: no key is trusted.
    with pytest.raises(RemoteRefusedError) as caught:
        await can_list(entry(), layout)
    assert server.fingerprint in str(caught.value)
    assert "system/known_hosts does not exist" in str(caught.value)

    # A configured knownHosts file that does not exist is refused before connecting.
    with pytest.raises(RemoteRefusedError, match="does not exist"):
        await can_list(entry(knownHosts="missing_known_hosts"), layout)

    # A pinned fingerprint alone.
    assert await can_list(entry(hostKeyFingerprint=server.fingerprint), layout)

    # A wrong pinned fingerprint.
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    with pytest.raises(RemoteRefusedError) as caught:
        await can_list(entry(hostKeyFingerprint=other), layout)
    assert server.fingerprint in str(caught.value)

    # Opting out of the check.
    assert await can_list(entry(insecureIgnoreHostKey=True), layout)

    # The default system/known_hosts, and an absolute knownHosts path.
    write(layout.system / "known_hosts", server.known_hosts_line + "\n")
    assert await can_list(entry(), layout)
    elsewhere = write(layout.root / "trusted_hosts", server.known_hosts_line + "\n")
    assert await can_list(entry(knownHosts=str(elsewhere)), layout)


async def test_private_key_formats(server, remote, layout, client_keys, state):
    data = write(remote / "k.txt", "key test").read_bytes()

    async def fetch_with(key_name: str, **settings: object) -> None:
        entry = make_downloader(server, remote, name=f"dl-{key_name}", privateKeyPath=key_name,
                                **settings)
        results = await run_download(entry, layout, state)
        assert results == [moved("k.txt", data, "downloaded")]

    client_keys.ed25519.write_private_key(layout.system / "ed_openssh")
    await fetch_with("ed_openssh")

    client_keys.rsa.write_private_key(layout.system / "rsa_pkcs1", format_name="pkcs1-pem")
    assert (layout.system / "rsa_pkcs1").read_text().startswith(
        "-----BEGIN RSA PRIVATE KEY-----")
    await fetch_with("rsa_pkcs1")

    client_keys.rsa.write_private_key(layout.system / "rsa_pkcs8", format_name="pkcs8-pem")
    await fetch_with("rsa_pkcs8")

    encrypted = layout.system / "ed_encrypted"
    # Few bcrypt rounds keep the test fast; the format is the same.
    client_keys.ed25519.write_private_key(encrypted, passphrase="correct horse", rounds=50)
    await fetch_with("ed_encrypted", privatekeyPassphrase="correct horse")

    encrypted_pem = layout.system / "rsa_encrypted_pem"
    client_keys.rsa.write_private_key(encrypted_pem, format_name="pkcs8-pem",
                                      passphrase="pem pass", rounds=16)
    await fetch_with("rsa_encrypted_pem", privatekeyPassphrase="pem pass")

    with pytest.raises(RemoteRefusedError) as caught:
        await fetch_with("ed_encrypted", privatekeyPassphrase="wrong horse")
    assert str(encrypted) in str(caught.value)

    with pytest.raises(RemoteRefusedError) as caught:
        await fetch_with("ed_encrypted")
    assert str(encrypted) in str(caught.value)
    assert "privatekeyPassphrase" in str(caught.value)

    with pytest.raises(RemoteRefusedError) as caught:
        await fetch_with("no_such_key")
    assert str(layout.system / "no_such_key") in str(caught.value)

    # A key the server does not know: the login is refused.
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(layout.system / "stranger")
    with pytest.raises(RemoteRefusedError, match="refused the login"):
        await fetch_with("stranger")


@pytest.mark.skipif(not puttygen_available(), reason="puttygen (putty-tools) is not installed")
async def test_putty_keys_made_by_puttygen_log_in(server, remote, layout, client_keys, state,
                                                  tmp_path):
    """sSFTP's README: the key "supports Putty or PEM RSA private key file". Keys written by
    PuTTY's own puttygen, format 3 (Argon2id, its default cost) and format 2, log a
    downloader and an uploader in to OpenSSH's sshd."""
    data = write(remote / "p.txt", "putty key").read_bytes()
    openssh = {"ed": tmp_path / "ed", "rsa": tmp_path / "rsa"}
    client_keys.ed25519.write_private_key(openssh["ed"])
    client_keys.rsa.write_private_key(openssh["rsa"])

    async def fetch_with(key_name: str, **settings: object) -> None:
        entry = make_downloader(server, remote, name=f"dl-{key_name}", privateKeyPath=key_name,
                                **settings)
        assert await run_download(entry, layout, state) == [moved("p.txt", data, "downloaded")]

    for kind in ("ed", "rsa"):
        to_ppk(openssh[kind], layout.system / f"{kind}-v3.ppk", passphrase="p3 pass")
        assert "Key-Derivation: Argon2id" in (layout.system / f"{kind}-v3.ppk").read_text()
        await fetch_with(f"{kind}-v3.ppk", privatekeyPassphrase="p3 pass")
        to_ppk(openssh[kind], layout.system / f"{kind}-v2.ppk", version=2,
               passphrase="p2 pass")
        await fetch_with(f"{kind}-v2.ppk", privatekeyPassphrase="p2 pass")

    to_ppk(openssh["ed"], layout.system / "up.ppk")
    write(layout.clean / "outbox" / "u.txt", "sent with a putty key")
    uploader = make_uploader(server, remote.name, privatekeyPath="up.ppk")
    assert [row.outcome for row in await run_upload(uploader, layout, state)] == ["uploaded"]
    assert (remote / "u.txt").read_text() == "sent with a putty key"

    with pytest.raises(RemoteRefusedError) as caught:
        await fetch_with("ed-v3.ppk", privatekeyPassphrase="p2 pass")
    assert str(caught.value) == (
        f"dl-ed-v3.ppk: private key {layout.system / 'ed-v3.ppk'} cannot be used: wrong "
        "passphrase, or the file is corrupt (its MAC does not match)")


async def test_remote_down_is_unavailable(server, layout, client_key):
    port = free_port()
    entry = make_downloader(server, None, port=port)

    with pytest.raises(RemoteUnavailableError) as caught:
        await can_list(entry, layout)

    assert f"127.0.0.1:{port}" in str(caught.value)


# -- another ssftp instance as the remote server -------------------------------------------


async def test_download_from_an_ssftp_clean_account_with_delete(gateway, layout):
    """A downloader pulling from another ssftp instance's clean area (a consumer account with
    allowDelete), the other way to chain two instances."""

    name = unique_name()
    published = gateway.layout.clean / "partner-a" / name
    (published / "deep").mkdir(parents=True)
    (published / "deep" / "handed-on.bin").write_bytes(b"\x00scanned once\xff" * 500)
    known = [f"[127.0.0.1]:{gateway.port} "
             + asyncssh.read_private_key(path).export_public_key().decode().strip()
             for path in sorted(gateway.layout.system.glob("ssh_host_*_key"))]
    (layout.system / "known_hosts").write_text("\n".join(known) + "\n")
    entry = Downloader.model_validate({
        "name": "from-gateway", "host": "127.0.0.1", "port": gateway.port,
        "username": "clean-admin", "password": PASSWORDS["clean-admin"],
        "localStagingDirectory": "hop", "remoteDirectory": f"partner-a/{name}",
        "deleteRemoteFileAfterDownload": True})

    with TransferState.open(layout.system) as state:
        async with open_sftp(entry, layout.system, 10) as sftp:
            results = await download_files(entry, layout, state, sftp)

    assert [(r.file, r.outcome) for r in results] == [("deep/handed-on.bin", "downloaded")]
    staged = layout.staging / "hop" / "deep" / "handed-on.bin"
    assert staged.read_bytes() == b"\x00scanned once\xff" * 500
    assert not (published / "deep" / "handed-on.bin").exists()


async def test_a_pinned_fingerprint_of_any_of_the_servers_key_types_is_trusted(
        tmp_path, layout, client_keys, client_key):
    """A server with an ed25519, an ECDSA and an RSA host key shows one of them first; an
    operator who pinned either of the others is served too (refused on every run before)."""
    keys = {}
    for kind in ("rsa", "ecdsa"):
        path = tmp_path / f"ssh_host_{kind}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True,
                       capture_output=True)
        keys[kind] = path
    authorized = [client_keys.ed25519.export_public_key().decode().strip()]
    extra = "".join(f"HostKey {path}\n" for path in keys.values())
    with OpenSshServer.start(tmp_path / "sshd", authorized_keys=authorized,
                             sftp_root=tmp_path / "remote", extra_config=extra) as server:
        (server.sftp_root / "here.txt").write_text("here\n")
        fingerprints = {kind: asyncssh.read_public_key(f"{path}.pub").get_fingerprint("sha256")
                        for kind, path in keys.items()}
        fingerprints["ed25519"] = server.fingerprint
        for kind in ("rsa", "ecdsa", "ed25519"):
            entry = make_downloader(server, None, hostKeyFingerprint=fingerprints[kind])
            assert "here.txt" in await can_list(entry, layout)

        wrong = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
        with pytest.raises(RemoteRefusedError) as refused:
            await can_list(make_downloader(server, None, hostKeyFingerprint=wrong), layout)
    message = str(refused.value)
    assert "host keys of" in message and ") are not trusted by" in message
    for kind, shown in (("ssh-ed25519", server.fingerprint), ("ssh-rsa", fingerprints["rsa"]),
                        ("ecdsa-sha2-nistp256", fingerprints["ecdsa"])):
        assert f"{kind} {shown}" in message
