"""Name patterns (``filePatterns``, issue 27) through real clients: OpenSSH's ``sftp`` and
paramiko against a real server. A refused name is answered SSH_FX_PERMISSION_DENIED with the
reason, logged as ``refused``, and never reaches staging: not at OPEN (nothing written, no temp
file), not by a rename (of a client temp name, or of the account's own upload), not as a
directory. A sub-directory's rules replace the account's; a consumer cannot download a refused
name. Which names match is tests/unit/test_file_patterns.py's.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.sftp_client import run_sftp
from tests.support.config import CONSUMER_PASSWORD, PARTNER_PASSWORD, write_config
from tests.support.gateway import ServerThread, unique_name
from tests.support.logs import wait_for_log
from tests.support.sftp import paramiko_sftp, temp_files

EXE_REFUSED = "name refused by filePatterns: *.exe"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("patterns")
    config = write_config(root / "ssftp.yaml", f"""
    sftpPort: 0
    fsyncUploads: false
    users:
      stagingDir:
        - directory: partner-a
          auth: {{username: partner-a, password: {PARTNER_PASSWORD}}}
          filePatterns:
            denied: ["*.exe", "*.bat"]
            directories:
              reports: {{allowed: ["*.csv"]}}
              tools: {{}}
      cleanDir:
        - directory: partner-a
          auth: {{username: consumer-a, password: {CONSUMER_PASSWORD}}}
          filePatterns: {{denied: ["*.exe"]}}
    """)
    server = ServerThread(config, root / "data")
    yield server
    server.stop()


def staged(server: ServerThread, name: str) -> Path:
    return server.layout.staging / "partner-a" / name


def staged_names(server: ServerThread, token: str, sub: str = ".") -> list[str]:
    """The names in the account's staging directory that hold ``token``, temp files too."""
    return sorted(path.name for path in staged(server, sub).iterdir() if token in path.name)


def assert_refused(call, reason: str) -> None:
    """paramiko shows SSH_FX_PERMISSION_DENIED as EACCES with the server's message."""
    with pytest.raises(PermissionError) as raised:
        call()
    assert raised.value.errno == errno.EACCES
    assert reason in str(raised.value)


def assert_refusal_logged(server: ServerThread, op: str, path_part: str, reason: str) -> None:
    wait_for_log(server.layout.log,
                 lambda e: (e.get("event") == "refused" and e.get("op") == op
                            and path_part in str(e.get("path", ""))
                            and e.get("reason") == reason),
                 what=f"refusal of {op} {path_part}")


def test_openssh_put_of_a_denied_name_is_refused_with_the_reason_and_nothing_staged(
        server: ServerThread, workdir: Path):
    t = unique_name()
    (workdir / f"ok-{t}.txt").write_bytes(b"fine")
    (workdir / f"setup-{t}.exe").write_bytes(b"MZ not wanted")
    result = run_sftp(server.port, "partner-a",
                      [f"put ok-{t}.txt", f"put setup-{t}.exe"], cwd=workdir,
                      password=PARTNER_PASSWORD)
    assert result.returncode != 0
    assert EXE_REFUSED in result.stderr  # the reason, on the session's stderr
    assert "Permission denied" in result.stderr
    assert staged(server, f"ok-{t}.txt").read_bytes() == b"fine"
    assert staged_names(server, t) == [f"ok-{t}.txt"]
    assert not temp_files(staged(server, "."))
    assert_refusal_logged(server, "open", f"setup-{t}.exe", EXE_REFUSED)


def test_names_are_matched_in_any_letter_case_and_a_temp_name_as_its_final_name(
        server: ServerThread, workdir: Path):
    """WinSCP and rclone upload to ``NAME.filepart``: refused at its OPEN when NAME is, so
    not a byte of it is written; an allowed one works as before."""
    t = unique_name()
    local = workdir / "local.bin"
    local.write_bytes(b"x" * 10_000)
    with paramiko_sftp(server.port) as sftp:
        assert_refused(lambda: sftp.put(str(local), f"SETUP-{t}.EXE"), EXE_REFUSED)
        assert_refused(lambda: sftp.put(str(local), f"run-{t}.Bat.filepart"),
                       "name refused by filePatterns: *.bat")
        assert_refused(lambda: sftp.put(str(local), f".in.tool-{t}.exe."), EXE_REFUSED)
        sftp.put(str(local), f"data-{t}.csv.filepart")
        sftp.rename(f"data-{t}.csv.filepart", f"data-{t}.csv")
    assert staged_names(server, t) == [f"data-{t}.csv"]


def test_a_rename_to_a_denied_name_is_refused(server: ServerThread, workdir: Path):
    """From a client temp name that does not carry the final name (gvfs's ``.giosave``),
    and the account's own upload of the last minute (server.renames), with SSH_FXP_RENAME
    and posix-rename: the file stays under its first name."""
    t = unique_name()
    local = workdir / "local.bin"
    local.write_bytes(b"payload")
    gio_temp = f".giosave{t[:6]}"
    with paramiko_sftp(server.port) as sftp:
        sftp.put(str(local), gio_temp)
        assert_refused(lambda: sftp.rename(gio_temp, f"tool-{t}.exe"), EXE_REFUSED)
        sftp.put(str(local), f"upload-{t}.tmp")
        assert_refused(lambda: sftp.rename(f"upload-{t}.tmp", f"upload-{t}.EXE"), EXE_REFUSED)
        assert_refused(lambda: sftp.posix_rename(f"upload-{t}.tmp", f"upload-{t}.exe"),
                       EXE_REFUSED)
        sftp.posix_rename(f"upload-{t}.tmp", f"upload-{t}.txt")  # an allowed name still works
    assert staged_names(server, t) == [f"upload-{t}.txt"]
    assert staged(server, gio_temp).read_bytes() == b"payload"
    assert_refusal_logged(server, "rename", gio_temp, EXE_REFUSED)


def test_a_sub_directory_rule_replaces_the_accounts_and_directories_are_held_to_denied(
        server: ServerThread, workdir: Path):
    t = unique_name()
    for name in (f"q-{t}.csv", f"q-{t}.txt", f"tool-{t}.exe"):
        (workdir / name).write_bytes(b"data")
    ok = run_sftp(server.port, "partner-a",
                  ["-mkdir reports", "-mkdir tools", f"mkdir reports/in-{t}",
                   f"put q-{t}.csv reports/in-{t}/", f"put tool-{t}.exe tools/"],
                  cwd=workdir, password=PARTNER_PASSWORD)
    assert ok.returncode == 0, ok.stderr
    assert staged_names(server, t, f"reports/in-{t}") == [f"q-{t}.csv"]
    assert staged_names(server, t, "tools") == [f"tool-{t}.exe"]  # tools: {} lifts *.exe
    refused = run_sftp(server.port, "partner-a", [f"put q-{t}.txt reports/"], cwd=workdir,
                       password=PARTNER_PASSWORD)
    assert refused.returncode != 0
    assert "name refused by filePatterns: not one of *.csv" in refused.stderr
    assert staged_names(server, t, "reports") == [f"in-{t}"]
    assert not temp_files(staged(server, "reports"))
    refused = run_sftp(server.port, "partner-a", [f"mkdir bin-{t}.EXE"], cwd=workdir,
                       password=PARTNER_PASSWORD)
    assert refused.returncode != 0
    assert EXE_REFUSED in refused.stderr
    assert not staged_names(server, t)
    assert_refusal_logged(server, "mkdir", f"bin-{t}.EXE", EXE_REFUSED)


def test_a_consumer_cannot_download_a_denied_name(server: ServerThread, workdir: Path):
    """SFTPGo's default deny policy: refused, though still listed."""
    t = unique_name()
    clean = server.layout.clean / "partner-a"
    clean.mkdir(parents=True, exist_ok=True)
    (clean / f"tool-{t}.exe").write_bytes(b"came by another way")
    (clean / f"report-{t}.csv").write_bytes(b"clean data")
    with paramiko_sftp(server.port, "consumer-a", CONSUMER_PASSWORD) as sftp:
        assert f"tool-{t}.exe" in sftp.listdir(".")
        assert_refused(lambda: sftp.get(f"tool-{t}.exe", str(workdir / "got.exe")), EXE_REFUSED)
        sftp.get(f"report-{t}.csv", str(workdir / "got.csv"))
    assert (workdir / "got.csv").read_bytes() == b"clean data"
    result = run_sftp(server.port, "consumer-a", [f"get tool-{t}.exe"], cwd=workdir,
                      password=CONSUMER_PASSWORD)
    assert result.returncode != 0
    assert EXE_REFUSED in result.stderr
    assert not (workdir / f"tool-{t}.exe").exists()
