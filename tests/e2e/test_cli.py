"""The ``ssftp`` console script as a user runs it: check-config, hash-password, serve, portable."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess

import asyncssh
import paramiko
import pytest

from ssftp.passwords import PasswordVerifier
from testkit.files import EICAR, make_random_file, sha256_file
from testkit.openssh_server import free_port
from testkit.putty_keys import puttygen_available, to_ppk
from testkit.sftp_client import make_client_key, run_sftp
from tests.support.cli import SSFTP
from tests.support.logs import log_entries, wait_for_log
from tests.support.repo import REPO
from tests.support.waiting import wait_for

SHARED_EXAMPLE = REPO.parent / "shared" / "ssftp-compat-example.yaml"


def ssftp(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSFTP, *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_check_config_valid_prints_warnings():
    result = ssftp("check-config", str(SHARED_EXAMPLE))
    assert result.returncode == 0
    assert "valid (1 staging and 1 clean accounts, 1 downloaders, 1 uploaders)" in result.stdout
    assert "warning: " in result.stdout and "plaintext password" in result.stdout
    assert "supersecure" not in result.stdout + result.stderr


def test_check_config_invalid_exits_nonzero_with_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sftpPort: 2002\nusers:\n  stagingDir:\n    - directory: /etc\n"
                   "      auth: {username: u, password: p}\n")
    result = ssftp("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:4: users.stagingDir[0].directory: must be a relative directory name" \
        in result.stderr


def remote_entries_config(path, key: str, passphrase: str) -> str:
    """A downloader with ``key`` and an uploader with a key that is not there (yet)."""
    path.write_text(f"""sftpPort: 2002
sftpClientDownloaders:
  - name: partner
    host: 127.0.0.1
    username: u
    privateKeyPath: {key}
    privatekeyPassphrase: "{passphrase}"
    localStagingDirectory: inbox
    knownHosts: partner_hosts
sftpClientUploaders:
  - name: onward
    host: 127.0.0.1
    username: u
    privatekeyPath: later.ppk
    localDirectoryToUpload: outbox
""")
    return str(path)


@pytest.mark.skipif(not puttygen_available(), reason="puttygen (putty-tools) is not installed")
def test_check_config_loads_client_keys_and_known_hosts(tmp_path):
    """check-config reads each downloader's and uploader's key (a PuTTY one too) and
    known_hosts file as a run would, relative to --data-dir's system/: one it cannot read or
    decrypt is refused, naming the entry, key path and file; one not there yet is a warning."""
    system = tmp_path / "data" / "system"
    system.mkdir(parents=True)
    make_client_key(tmp_path, "id")
    to_ppk(tmp_path / "id", system / "partner.ppk", passphrase="right words")
    (system / "partner_hosts").write_text("[127.0.0.1]:22 " + asyncssh.generate_private_key(
        "ssh-ed25519").export_public_key().decode())
    data_dir = ("--data-dir", str(tmp_path / "data"))

    config = remote_entries_config(tmp_path / "good.yaml", "partner.ppk", "right words")
    result = ssftp("check-config", *data_dir, config)
    assert result.returncode == 0, result.stderr
    assert "valid (0 staging and 0 clean accounts, 1 downloaders, 1 uploaders)" in result.stdout
    assert (f"warning: {config}: sftpClientUploaders[0].privatekeyPath: onward: private key "
            f"{system / 'later.ppk'} does not exist: every run fails until it does"
            in result.stdout)

    config = remote_entries_config(tmp_path / "wrong.yaml", "partner.ppk", "wrong words")
    result = ssftp("check-config", *data_dir, config)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"ssftp check-config: invalid config {config}:",
        f"  {config}: sftpClientDownloaders[0].privateKeyPath: partner: private key "
        f"{system / 'partner.ppk'} cannot be used: wrong passphrase, or the file is corrupt "
        "(its MAC does not match)"]

    (system / "partner_hosts").write_text("127.0.0.1\n")  # a host without a key
    config = remote_entries_config(tmp_path / "hosts.yaml", "partner.ppk", "right words")
    result = ssftp("check-config", *data_dir, config)
    assert result.returncode == 2
    assert (f"  {config}: sftpClientDownloaders[0].knownHosts: partner: known_hosts file "
            f"{system / 'partner_hosts'} cannot be read: " in result.stderr)


@pytest.mark.parametrize("scheme", ["bcrypt", "argon2id"])
def test_hash_password(scheme):
    result = ssftp("hash-password", "--scheme", scheme, stdin="my pass phrase\n")
    assert result.returncode == 0
    hashed = result.stdout.strip()
    assert "my pass phrase" not in hashed
    verifier = PasswordVerifier.parse(hashed)
    assert verifier.scheme == scheme and verifier.verify("my pass phrase")


class Running:
    """A server subprocess; the port comes from its own "listening" log line (port 0 = free)."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([SSFTP, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.lines: list[dict] = []
        for line in self.proc.stdout:
            event = json.loads(line)
            self.lines.append(event)
            if event["event"] == "listening":
                self.port = event["port"]
                return
        raise AssertionError(f"server did not start: {self.proc.stderr.read()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)


def test_serve_refuses_bad_config_and_starts_with_good(tmp_path, keys, workdir):
    data = tmp_path / "data"
    config = tmp_path / "ssftp.yaml"
    config.write_text("users:\n  stagingDir:\n    - directory: d\n      auth: {username: u}\n")
    refused = ssftp("serve", "--config", str(config), "--data-dir", str(data), "--port", "0")
    assert refused.returncode == 2
    assert "users.stagingDir[0].auth: an account needs a password or a publicKey" \
        in refused.stderr

    config.write_text("users:\n  stagingDir:\n    - directory: d\n"
                      f"      auth: {{username: u, publicKey: \"{keys.partner.public_line}\"}}\n")
    server = Running(["serve", "--config", str(config), "--data-dir", str(data), "--port", "0"])
    try:
        (workdir / "f.txt").write_text("via the console script")
        result = run_sftp(server.port, "u", ["put f.txt"], cwd=workdir,
                          key=keys.partner.private_path)
        assert result.returncode == 0, result.stderr
        assert (data / "staging" / "d" / "f.txt").read_text() == "via the console script"
        assert server.lines[0]["host"] == "127.0.0.1"
    finally:
        assert server.stop() == 0
    # Host keys were generated once into system/ and are reused on the next start.
    host_keys = sorted(p.name for p in (data / "system").glob("ssh_host_*_key"))
    assert host_keys == ["ssh_host_ecdsa_key", "ssh_host_ed25519_key", "ssh_host_rsa_key"]
    first = server.lines[0]["host_keys"]
    # Each by its type: a fingerprint pinned without it was another type's.
    assert sorted(entry.split()[0] for entry in first) == [
        "ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"], first
    assert all(entry.split()[1].startswith("SHA256:") for entry in first), first
    again = Running(["serve", "--config", str(config), "--data-dir", str(data), "--port", "0"])
    try:
        assert again.lines[-1]["host_keys"] == first
    finally:
        again.stop()


def rewrite_unseen(path, text: str) -> None:
    """``text`` into the file at ``path`` in a way the config watcher does not see: through a
    hard link in another directory (inotify tells the watched directory only of its own
    names), the same inode, its mtime put back (so with the same size, a poll sees the same
    stamp too). So a change reaches a server whose filesystem sends no events (NFS), where
    SIGHUP is the way to apply it."""
    link = path.parent.parent / "elsewhere" / path.name
    link.parent.mkdir(exist_ok=True)
    if not link.exists():
        os.link(path, link)
    before = link.stat()
    with open(link, "r+b") as file:
        file.write(text.encode())
        file.truncate()
    os.utime(link, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_sighup_reloads_the_config_of_a_running_serve(tmp_path, workdir):
    """systemd's ExecReload=kill -HUP: SIGHUP reads the config again, applies a valid one
    (a new account logs in), logs one line whatever the outcome (reloaded, unchanged,
    rejected with the old config kept), and never stops the server."""
    data = tmp_path / "data"
    config = tmp_path / "conf" / "ssftp.yaml"
    config.parent.mkdir()
    account = ("users:\n  stagingDir:\n    - directory: d\n"
               "      auth: {{username: {0}, password: {0}-pw}}\n")
    config.write_text(account.format("alpha"))
    server = Running(["serve", "--config", str(config), "--data-dir", str(data), "--port", "0"])
    logs = data / "log"

    def login(user: str) -> int:
        return run_sftp(server.port, user, ["ls"], cwd=workdir, password=f"{user}-pw").returncode

    def after_sighup(event: str) -> dict:
        seen = len(log_entries(logs))
        server.proc.send_signal(signal.SIGHUP)
        return wait_for_log(logs, lambda entry: entry in log_entries(logs)[seen:]
                            and entry.get("trigger") == "SIGHUP", what=event)

    try:
        assert login("alpha") == 0
        rewrite_unseen(config, account.format("bravo"))
        assert login("bravo") != 0  # the watcher did not see it

        reloaded = after_sighup("config reloaded")
        assert reloaded["event"] == "config reloaded" and reloaded["accounts"] == 1
        assert login("bravo") == 0 and login("alpha") != 0

        assert after_sighup("config unchanged")["event"] == "config unchanged"

        rewrite_unseen(config, "sftpPort: [\n")
        rejected = after_sighup("config change rejected")
        assert rejected["event"] == "config change rejected, keeping the last good config"
        assert login("bravo") == 0
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0
    reloads = [entry for entry in log_entries(logs) if entry.get("trigger") == "SIGHUP"]
    assert [entry["event"] for entry in reloads] == [
        "config reloaded", "config unchanged",
        "config change rejected, keeping the last good config"]


def test_portable_mode(tmp_path, workdir):
    shared = tmp_path / "shared dir"
    server = Running(["portable", "--directory", str(shared), "--username", "guest",
                      "--password", "guest-pw", "--permissions", "*", "--port", "0",
                      "--data-dir", str(tmp_path / "data")])
    try:
        source = make_random_file(workdir / "blob.bin", 3 * 1024 * 1024 + 7)
        result = run_sftp(server.port, "guest",
                          ["mkdir in", "put blob.bin in/blob.bin", "get in/blob.bin back.bin",
                           "rename in/blob.bin in/renamed.bin", "ls in"],
                          cwd=workdir, password="guest-pw")
        assert result.returncode == 0, result.stderr
        assert sha256_file(workdir / "back.bin") == sha256_file(source)
        assert (shared / "in" / "renamed.bin").exists()
        wrong = run_sftp(server.port, "guest", ["ls"], cwd=workdir, password="nope")
        assert wrong.returncode != 0
    finally:
        assert server.stop() == 0


def test_portable_default_is_read_only(tmp_path, workdir):
    shared = tmp_path / "ro"
    shared.mkdir()
    (shared / "offer.txt").write_text("take me")
    server = Running(["portable", "--directory", str(shared), "--username", "guest",
                      "--password", "guest-pw", "--port", "0",
                      "--data-dir", str(tmp_path / "data")])
    try:
        (workdir / "up.txt").write_text("x")
        got = run_sftp(server.port, "guest", ["get offer.txt"], cwd=workdir, password="guest-pw")
        assert got.returncode == 0 and (workdir / "offer.txt").read_text() == "take me"
        put = run_sftp(server.port, "guest", ["put up.txt"], cwd=workdir, password="guest-pw")
        assert put.returncode != 0 and "Permission denied" in put.stdout + put.stderr
        assert not (shared / "up.txt").exists()
    finally:
        server.stop()



# --- conventions a new user expects ----------------------------------------------------------


def test_version():
    result = ssftp("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "ssftp 0.1.0"


def test_worker_offers_no_listening_options():
    """The worker listens on nothing: --host/--port would be a lie."""
    result = ssftp("worker", "--help")
    assert result.returncode == 0
    assert "--host" not in result.stdout and "--port" not in result.stdout
    assert "--config" in result.stdout and "--data-dir" in result.stdout


def test_portable_help_says_what_each_option_does_and_its_default():
    result = ssftp("portable", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for expected in ("the directory the user sees as /", "(default: 2022)",
                     "(default: 127.0.0.1)", "(default: list,download)"):
        assert expected in text, expected


def test_up_without_a_config_names_the_file_and_the_example_and_creates_nothing(tmp_path):
    data = tmp_path / "data"
    result = ssftp("up", "--data-dir", str(data))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"ssftp up: no config file at {data}/system/ssftp.yaml; pass --config FILE, or start "
        "from config/ssftp.example.yaml of the ssftp source")
    assert not data.exists()


def test_serve_refuses_a_bad_config_before_creating_the_data_root(tmp_path):
    config = tmp_path / "ssftp.yaml"
    config.write_text("sftpPort: [\n")
    result = ssftp("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2 and str(config) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", ["serve", "portable"])
def test_a_busy_port_is_one_line_and_exit_2(tmp_path, keys, command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if command == "serve":
            config = tmp_path / "ssftp.yaml"
            config.write_text("users:\n  stagingDir:\n    - directory: d\n      auth: "
                              f"{{username: u, publicKey: \"{keys.partner.public_line}\"}}\n")
            args = ["serve", "--config", str(config)]
        else:
            args = ["portable", "--directory", str(tmp_path / "shared"), "--username", "u",
                    "--password", "pw"]
        result = ssftp(*args, "--data-dir", str(tmp_path / "data"), "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"ssftp {command}: cannot listen on 127.0.0.1:{port}: address already in use")


def test_text_console_for_a_person_and_json_files_always(tmp_path):
    shared = tmp_path / "shared"
    proc = subprocess.Popen(
        [SSFTP, "portable", "--directory", str(shared), "--username", "u", "--password", "pw",
         "--port", "0", "--data-dir", str(tmp_path / "data"), "--log-format", "text"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    # "12:00:01 info     listening  host=127.0.0.1 port=40211 host_keys=[...]"
    assert re.fullmatch(r"\d\d:\d\d:\d\d info +listening  host=127\.0\.0\.1 port=\d+ .*\n", line)
    record = json.loads((tmp_path / "data" / "log" / "ssftp.log").read_text().splitlines()[0])
    assert record["event"] == "listening" and record["host"] == "127.0.0.1"


def test_log_level_warning_keeps_info_events_out_of_console_and_app_log(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [SSFTP, "portable", "--directory", str(tmp_path / "shared"), "--username", "u",
         "--password", "pw", "--port", str(port), "--data-dir", str(tmp_path / "data"),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the portable server to listen", lambda: answers(port))
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "listening" not in out
    assert "listening" not in (tmp_path / "data" / "log" / "ssftp.log").read_text()


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["hash-password"], "\n", "ssftp hash-password: refusing to hash an empty password"),
    (["portable", "--directory", "d", "--username", "u"], "",
     "ssftp portable: give a password or a public key"),
    (["portable", "--directory", "d", "--username", "u", "--password", "p",
      "--permissions", "list,sudo"], "", "ssftp portable: unknown permission 'sudo'"),
    (["scan", "--clamd", "nonsense", "f"], "", "ssftp scan: a clamd address is a socket path"),
], ids=["empty-password", "no-credential", "unknown-permission", "bad-clamd-address"])
def test_bad_values_on_the_command_line_are_one_line_and_exit_2(tmp_path, args, stdin, message):
    result = subprocess.run([SSFTP, *args], input=stdin, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


# --- names from partners on an operator's terminal ---------------------------------------------

# What a terminal acts on: ESC (title, colours, clearing the screen), BEL, and the C1 CSI as a
# raw byte and as the character (UTF-8).
TERMINAL_CONTROLS = (b"\x1b", b"\x07", b"\x9b", b"\xc2\x9b")
HOSTILE_NAMES = (b"\x1b]0;PWNED\x07.txt", b"csi-\xc2\x9b31m.txt", b"raw-\x9b-\xff.txt")


def ssftp_bytes(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """The console script with a UTF-8 locale (an operator's terminal), its output as bytes."""
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("PYTHONIOENCODING", None)
    return subprocess.run([SSFTP, *args], capture_output=True, timeout=60, env=env)


def assert_no_terminal_controls(result: subprocess.CompletedProcess[bytes]) -> None:
    for stream in (result.stdout, result.stderr):
        assert b"Traceback" not in stream, stream
        for control in TERMINAL_CONTROLS:
            assert control not in stream, (control, stream)


def test_scan_prints_hostile_file_names_escaped(clamd, tmp_path):
    """On main the names went to the terminal raw (a title set to PWNED, a cleared screen),
    and a name that is not UTF-8 ended the command with a traceback."""
    directory = os.fsencode(tmp_path / "drop")
    os.mkdir(directory)
    for name in HOSTILE_NAMES:
        with open(os.path.join(directory, name), "wb") as file:
            file.write(b"harmless\n")
    with open(os.path.join(directory, b"\x1b[2J-eicar.com"), "wb") as file:
        file.write(EICAR)
    result = ssftp_bytes("scan", "--clamd", str(clamd.socket), directory)
    assert_no_terminal_controls(result)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 4
    assert f"{tmp_path}/drop/\\x1b]0;PWNED\\x07.txt: clean: OK" in lines
    assert f"{tmp_path}/drop/raw-\\x9b-\\xff.txt: clean: OK" in lines
    assert any(line.startswith(f"{tmp_path}/drop/\\x1b[2J-eicar.com: infected: ")
               for line in lines)


def test_scan_of_a_missing_hostile_name_says_so_escaped(clamd, tmp_path):
    result = ssftp_bytes("scan", "--clamd", str(clamd.socket),
                         os.fsencode(tmp_path) + b"/gone-\x1b]0;PWNED\x07-\xff")
    assert_no_terminal_controls(result)
    assert result.returncode == 2
    assert result.stderr.decode() == (f"ssftp scan: no such file or directory: "
                                      f"{tmp_path}/gone-\\x1b]0;PWNED\\x07-\\xff\n")


def test_text_console_shows_a_hostile_file_name_escaped(tmp_path):
    """A partner chooses the names it uploads, and the console's ``refused`` line shows the
    one refused: on main raw (the console's text format made names valid UTF-8, nothing
    more). asyncssh refuses control characters in user names itself."""
    proc = subprocess.Popen(
        [SSFTP, "portable", "--directory", str(tmp_path / "shared"), "--username", "u",
         "--password", "pw", "--permissions", "*", "--port", "0", "--data-dir",
         str(tmp_path / "data"), "--log-format", "text"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(re.search(rb" port=(\d+)", proc.stdout.readline())[1])
        transport = paramiko.Transport(("127.0.0.1", port))
        try:
            transport.connect(username="u", password="pw")
            sftp = paramiko.SFTPClient.from_transport(transport)
            with pytest.raises(PermissionError):
                sftp.open("\x1b]0;PWNED\x07\x9b.txt", "w")
        finally:
            transport.close()
        refused = b""
        while b" refused " not in refused:
            refused = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    console = subprocess.CompletedProcess(proc.args, proc.returncode, refused + out, err)
    assert_no_terminal_controls(console)
    assert b"path=\\x1b]0;PWNED\\x07\\x9b.txt" in refused


def test_run_resolves_a_relative_path_in_the_caller_s_directory(tmp_path):
    """./run changed to the repo first: `./run check-config mine.yaml` looked for the repo's."""
    (tmp_path / "mine.yaml").write_bytes((REPO / "config" / "ssftp.example.yaml").read_bytes())
    result = subprocess.run([str(REPO / "run"), "check-config", "mine.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("mine.yaml: valid"), result.stdout


def test_initial_config_starts_the_data_root_s_own_config_once(tmp_path):
    """A worker that then stops for want of a Prefect server: the copy is made before."""
    data, example = tmp_path / "data", REPO / "config" / "ssftp.example.yaml"
    own = data / "system" / "ssftp.yaml"
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    command = [SSFTP, "worker", "--data-dir", str(data), "--initial-config", str(example)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 2
    assert f"{own} is a copy of {example}: edit it there" in first.stderr
    assert "no Prefect server answers" in first.stderr and "Traceback" not in first.stderr
    assert own.read_bytes() == example.read_bytes()
    assert own.stat().st_mode & 0o777 == 0o600  # it holds password hashes
    own.write_text(own.read_text().replace("gateway1", "edited"))
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert "is a copy of" not in again.stderr  # the edited copy stays
    assert "instanceName: edited" in own.read_text()
    both = ssftp("up", "--config", str(example), "--initial-config", str(example),
                 "--data-dir", str(data))
    assert both.returncode == 2
    assert "--initial-config starts the data root's own config" in both.stderr
    missing = ssftp("up", "--initial-config", str(tmp_path / "none.yaml"), "--data-dir",
                    str(tmp_path / "other"))
    assert (missing.returncode, missing.stderr.strip()) == (
        2, f"ssftp up: --initial-config {tmp_path / 'none.yaml'}: No such file or directory")


@pytest.mark.parametrize("name", ["two words", "a/b", ""])
def test_a_worker_name_that_cannot_tag_a_run_is_refused_in_one_line(tmp_path, name):
    result = subprocess.run([SSFTP, "worker", "--data-dir", str(tmp_path / "data"), "--name",
                             name], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ssftp worker: worker name {name!r} is not valid: 1 to 127 letters, digits, '.', '-' "
        "or '_', starting with a letter or digit"]
