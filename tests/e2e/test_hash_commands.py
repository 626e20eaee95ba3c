"""SSH exec ``md5sum``/``sha1sum``/``sha256sum`` (issue 14), as SFTPGo offers them: real
``ssh`` and ``rclone md5sum``/``check`` on a clean account; refusals with the reason on stderr
and exit status 1 for everything else. The parsing of the commands is in
tests/unit/test_server_exec_commands.py."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from testkit.clients import HOST, SSH_OPTIONS, Target, missing, rclone, rclone_remote, run, ssh
from tests.support.gateway import unique_name

CONTENT = b"clean bytes for the consumer\n" * 100
DETECTED = ["--sftp-md5sum-command", "md5sum", "--sftp-sha1sum-command", "sha1sum"]


@pytest.fixture
def consumer_target(gateway, keys) -> Target:
    return Target(gateway.port, "consumer-a", keys.consumer.private_path)


@pytest.fixture
def clean_dir(gateway):
    """The consumer's directory in clean/ (the test plays the scanner and puts files there)."""
    directory = gateway.layout.clean / "partner-a" / f"hashes-{unique_name()}"
    directory.mkdir(parents=True)
    return directory


@pytest.mark.parametrize("algorithm", ["md5sum", "sha1sum", "sha256sum"])
def test_hash_command_prints_what_coreutils_prints(algorithm, consumer_target, clean_dir,
                                                   workdir):
    name = "a report 1.csv"
    (clean_dir / name).write_bytes(CONTENT)
    (workdir / name).write_bytes(CONTENT)
    remote = f"{clean_dir.name}/{name}"
    result = ssh(consumer_target, f"{algorithm} '{remote}'")
    assert result.returncode == 0, result.output
    (workdir / clean_dir.name).mkdir()
    (workdir / remote).write_bytes(CONTENT)
    local = subprocess.run([algorithm, remote], cwd=workdir, capture_output=True, text=True,
                           check=True)
    assert result.stdout == local.stdout
    expected = hashlib.new(algorithm.removesuffix("sum"), CONTENT).hexdigest()
    assert result.stdout.split()[0] == expected


def test_hash_of_standard_input(consumer_target):
    """rclone asks ``md5sum`` of empty input to learn whether the command works."""
    result = ssh(consumer_target, "md5sum")
    assert (result.returncode, result.stdout) == (0, "d41d8cd98f00b204e9800998ecf8427e  -\n")


@pytest.mark.parametrize(("command", "reason"), [
    ("ls -l", "command not available: 'ls'"),
    ("cat /etc/passwd", "command not available: 'cat'"),
    ("md5sum a b", "md5sum takes one path here"),
    ("sha256sum --check", "options are not supported"),
    ("md5sum .ssftp-claims/x", "reserved for ssftp"),
    ("sha1sum no-such-file", "sha1sum: no-such-file: No such file or directory"),
    ("md5sum 'unterminated", "cannot parse the command"),
])
def test_other_commands_are_refused_with_the_reason(command, reason, consumer_target):
    result = ssh(consumer_target, command)
    assert result.returncode == 1, result.output
    assert reason in result.stderr.splitlines()[-1] and result.stdout == "", result.output


def test_a_shell_is_refused_with_the_reason(consumer_target):
    result = run(["ssh", *SSH_OPTIONS, "-T", "-i", str(consumer_target.key), "-p",
                  str(consumer_target.port), f"{consumer_target.user}@{HOST}"])
    assert result.returncode == 1
    assert "no shell here: only SFTP and the commands md5sum" in result.stderr


def test_staging_account_may_not_hash(gateway, keys):
    """No download permission: no hashes, also of standard input (rclone then does without)."""
    target = Target(gateway.port, "partner-a", keys.partner.private_path)
    for command in ("md5sum", "sha256sum x.csv"):
        result = ssh(target, command)
        assert result.returncode == 1
        assert "hashing a file needs the 'download' permission" in result.stderr


def test_hash_is_jailed(consumer_target, gateway):
    """A path up and out lands in the home (``/..`` is ``/``), never outside it."""
    outside = gateway.layout.clean / f"outside-{unique_name()}.csv"
    outside.write_bytes(CONTENT)
    result = ssh(consumer_target, f"md5sum ../{outside.name}")
    assert result.returncode == 1 and "No such file" in result.stderr


def test_rclone_md5sum_and_check(consumer_target, clean_dir, workdir):
    """With the hash commands rclone detects (``md5sum``/``sha1sum`` on empty input) and
    saves to a remote's config after its first run. Given here, as an on-the-fly remote has
    no config to save them to, and rclone 1.60 races while it detects: the files hashed
    meanwhile get "hash unsupported" (its own bug, not the server's)."""
    if reason := missing("rclone"):
        pytest.skip(reason)
    names = {"one.csv": CONTENT, "two words.csv": CONTENT[::-1], "sub/three.csv": b"3\n"}
    for relative, content in names.items():
        for root in (clean_dir, workdir / "local"):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(content)
    remote = rclone_remote(consumer_target, clean_dir.name)
    listed = rclone(["md5sum", *DETECTED, remote], cwd=workdir)
    assert listed.returncode == 0, listed.output
    expected = {f"{hashlib.md5(content).hexdigest()}  {relative}"
                for relative, content in names.items()}
    assert set(listed.stdout.splitlines()) == expected
    checked = rclone(["check", *DETECTED, str(workdir / "local"), remote], cwd=workdir)
    assert checked.returncode == 0, checked.output
    assert "0 differences found" in checked.output and "3 matching files" in checked.output
    assert "hashes could not be checked" not in checked.output, checked.output
    (workdir / "local" / "one.csv").write_bytes(CONTENT.upper())  # same size, other bytes
    differing = rclone(["check", *DETECTED, str(workdir / "local"), remote], cwd=workdir)
    assert differing.returncode == 1 and "1 differences found" in differing.output
