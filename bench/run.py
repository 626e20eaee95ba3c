"""One benchmark run: start the servers in a temp directory, run the workloads, clean up.

The run directory is on tmpfs (``/dev/shm``) when there is one, so disk speed is out of the
SFTP figures for both servers alike; the JSON records which filesystem it was.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncssh

from bench import scale, workloads
from bench.clients import Login
from bench.floor import FloorServer
from bench.results import Row
from bench.servers import ACCOUNT_DIRECTORY, DOWNLOADER, UPLOADER, bench_config
from bench.sshfs import sshfs_missing, sshfs_rows
from bench.workloads import FLOOR, Side, Sizes
from ssftp.errors import ClamdStartError
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import SYSTEM_DATABASE, TEST_SIGNATURES, official_files
from testkit.openssh_server import OpenSshServer, free_port, sshd_available
from testkit.sftp_client import ClientKey, make_client_key
from testkit.ssftp_process import SsftpProcess

TMPFS = Path("/dev/shm")
OPENSSH = "OpenSSH"
# What a run without --only runs; --only also takes what is too long for that.
GROUPS = ("sftp", "sshfs", "pipeline")
ALL_GROUPS = (*GROUPS, "scale")


@dataclass
class Options:
    sizes: Sizes = field(default_factory=Sizes)
    json_path: Path = Path("bench-results.json")
    workdir_parent: Path | None = None
    keep: bool = False
    groups: tuple[str, ...] = GROUPS


def say(message: str) -> None:
    """Progress goes to stderr, so stdout is the table alone."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def filesystem_of(path: Path) -> str:
    """The type of the filesystem ``path`` is on, from /proc/mounts (longest mount prefix)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _device, mount, fstype = line.split()[:3]
            inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, fstype
    return kind


def default_workdir_parent() -> Path | None:
    if filesystem_of(TMPFS) == "tmpfs" and os.access(TMPFS, os.W_OK):
        return TMPFS
    return None


def _command_version(*command: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 \
        else "unknown"


def _context(workdir: Path, options: Options) -> dict[str, object]:
    repo = Path(__file__).resolve().parents[1]
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _command_version("git", "-C", str(repo), "rev-parse", "--short", "HEAD"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "asyncssh": asyncssh.__version__,
        "openssh": _command_version("ssh", "-V"),
        "workdir_filesystem": filesystem_of(workdir),
        "sizes": asdict(options.sizes),
    }


def _sftp_servers(workdir: Path, key: ClientKey, stack: contextlib.ExitStack) \
        -> tuple[Side, Side | None, Side]:
    """ssftp serve, OpenSSH's sshd as its reference when it is installed, and asyncssh's bare
    SFTP server (bench.floor)."""
    config = workdir / "serve.yaml"
    config.write_text(bench_config(key.public_line))
    say("starting ssftp serve")
    serve = SsftpProcess.start("serve", workdir, config, workdir / "serve-data")
    stack.callback(serve.stop)
    ssftp = Side("ssftp", serve.pid, Login(serve.port, UPLOADER, key.private_path),
                 Login(serve.port, DOWNLOADER, key.private_path),
                 serve.layout.staging / ACCOUNT_DIRECTORY, serve.layout.clean / ACCOUNT_DIRECTORY)
    reference = None
    if sshd_available():
        say("starting OpenSSH sshd (internal-sftp)")
        sshd = OpenSshServer.start(workdir / "sshd", authorized_keys=[key.public_line],
                                   sftp_root=workdir / "openssh-root")
        stack.callback(sshd.stop)
        login = Login(sshd.port, sshd.username, key.private_path)
        reference = Side(OPENSSH, sshd.process.pid, login, login, sshd.sftp_root,
                         sshd.sftp_root)
    else:
        say("OpenSSH sshd is not installed (Debian package openssh-server): ssftp's SFTP "
            "figures are measured without a reference")
    say("starting asyncssh's bare SFTP server")
    bare = FloorServer.start(workdir / "floor-root", key)
    stack.callback(bare.stop)
    login = Login(bare.port, "bench", key.private_path)
    floor = Side(FLOOR, bare.process.pid, login, login, bare.root, bare.root)
    return ssftp, reference, floor


def _sftp_rows(ssftp: Side, reference: Side | None, floor: Side, client: Path,
               sizes: Sizes) -> list[Row]:
    rows = []
    say("workload: one big file up and down, and the server's CPU for it")
    rows += workloads.big_file(ssftp, reference, client, sizes)
    say("workload: one big file fetched by asyncssh with its defaults")
    rows += workloads.asyncssh_get(ssftp, reference, client, sizes)
    say("workload: one file over a long link")
    rows += workloads.far_upload(ssftp, reference, client, sizes)
    say("workload: many small files up in one session")
    rows += workloads.many_files(ssftp, reference, client, sizes, floor=floor)
    say("workload: many small files down in one session")
    rows += workloads.many_downloads(ssftp, reference, client, sizes, floor=floor)
    say(f"workload: {sizes.concurrent_downloads} downloads at once")
    rows += workloads.concurrent_downloads(ssftp, reference, client, sizes)
    say("workload: logins per second")
    rows += workloads.logins(ssftp, reference, sizes)
    say("workload: memory with idle sessions")
    rows += workloads.idle_memory(ssftp, reference, sizes)
    say("workload: big file and small files again, every core but one busy")
    rows += workloads.loaded(ssftp, reference, client, sizes)
    return rows


def _sshfs_rows(ssftp: Side, reference: Side | None, client: Path, workdir: Path,
                sizes: Sizes) -> list[Row]:
    if missing := sshfs_missing():
        say(f"sshfs workloads skipped: {missing}")
        return []
    say("workload: cat, cp and ls -l through an sshfs mount")
    return sshfs_rows(ssftp, reference, client, workdir, sizes)


def _clamd(run_dir: Path, stack: contextlib.ExitStack, context: dict[str, object],
           group: str) -> ClamdDaemon | None:
    """clamd until the stack closes; None, said, when it cannot start."""
    say("starting clamd")
    try:
        # The official databases when Debian's freshclam has them, as a real gateway has.
        database = SYSTEM_DATABASE if official_files(SYSTEM_DATABASE) else TEST_SIGNATURES
        clamd = ClamdDaemon.start(run_dir, database=database)
    except ClamdStartError as exc:
        say(f"{group} workloads skipped: {exc}")
        return None
    stack.callback(clamd.stop)
    context["clamd"] = ClamdClient(clamd.address).command("VERSION")
    return clamd


def _pipeline_rows(workdir: Path, key: ClientKey, client: Path, sizes: Sizes,
                   stack: contextlib.ExitStack, context: dict[str, object]) -> list[Row]:
    if (clamd := _clamd(workdir / "clamd", stack, context, "pipeline")) is None:
        return []
    raw_clamd = ClamdClient(clamd.address, timeout=600)
    config = workdir / "up.yaml"
    config.write_text(bench_config(key.public_line, clamd_socket=clamd.socket))
    say("starting ssftp up (its own Prefect server; the first start migrates its database)")
    up = SsftpProcess.start("up", workdir, config, workdir / "up-data",
                            ("--prefect-port", str(free_port())))
    stack.callback(up.stop)
    uploader = Login(up.port, UPLOADER, key.private_path)
    clean_root = up.layout.clean / ACCOUNT_DIRECTORY
    say("workload: the first upload after the start")
    rows = workloads.first_latency(uploader, clean_root)
    say("workload: pipeline, many files until all are clean")
    rows += workloads.pipeline(uploader, clean_root, up.layout.quarantine,
                               raw_clamd, client, sizes)
    say("workload: single-file latency")
    rows += workloads.latency(uploader, clean_root, sizes)
    say(f"workload: a soak of {sizes.soak_clients} clients uploading together")
    rows += workloads.soak_rows(uploader, clean_root, sizes)
    say(f"workload: single-file latency during a rescan of {sizes.rescan_files} files")
    return rows + workloads.rescan(uploader, clean_root, up.layout.system,
                                   up.layout.log / "audit.log", sizes)


def run(options: Options) -> tuple[list[Row], dict[str, object]]:
    """Every workload of ``options.groups``; the rows and the run's context for the JSON."""
    workdir = Path(tempfile.mkdtemp(prefix="ssftp-bench-", dir=options.workdir_parent))
    say(f"working in {workdir} ({filesystem_of(workdir)})")
    context = _context(workdir, options)
    rows: list[Row] = []
    try:
        key = make_client_key(workdir, "client-key")
        client = workdir / "client"
        client.mkdir()
        if {"sftp", "sshfs"} & set(options.groups):
            with contextlib.ExitStack() as stack:
                ssftp, reference, floor = _sftp_servers(workdir, key, stack)
                if "sftp" in options.groups:
                    rows += _sftp_rows(ssftp, reference, floor, client, options.sizes)
                if "sshfs" in options.groups:
                    rows += _sshfs_rows(ssftp, reference, client, workdir, options.sizes)
        if "pipeline" in options.groups:
            with contextlib.ExitStack() as stack:
                rows += _pipeline_rows(workdir, key, client, options.sizes, stack, context)
        if "scale" in options.groups:
            with contextlib.ExitStack() as stack:
                rows += scale.sftp_rows(workdir, key, client, options.sizes, stack, say)
            with contextlib.ExitStack() as stack:
                if clamd := _clamd(workdir / "clamd-scale", stack, context, "scale pipeline"):
                    rows += scale.pipeline_rows(clamd, workdir, key, client, options.sizes,
                                                stack, say)
    finally:
        if options.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows, context
