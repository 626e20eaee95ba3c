"""The ``sshfs`` group: a FUSE mount of each server, used by plain ``cat``, ``cp`` and ``ls``.

sshfs is how many partners use an SFTP server without an SFTP client: its requests are the
kernel's (reads and writes of at most the FUSE request size, a LSTAT before most things, a
directory listing paged by READDIR), not those ``sftp`` batches, so a server can be fast for one
and slow for the other. Every sample mounts afresh (not timed) and unmounts after, so that no
sample is served from the mount's caches of the one before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.clients import CIPHER, HOST, Login
from bench.results import Better, Row, Target
from bench.workloads import MB, MIB, Side, Sizes, alternate, expect_file, served, side_row
from testkit.files import make_random_file

SSHFS = shutil.which("sshfs")
FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")


def sshfs_missing() -> str | None:
    """Why sshfs cannot mount here, or None when it can."""
    if SSHFS is None or FUSERMOUNT is None:
        return "sshfs is not installed (Debian package sshfs)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not available"
    if os.geteuid() != 0:
        return "mounting needs root"
    return None


@contextlib.contextmanager
def _mounted(login: Login, mount_point: Path) -> Iterator[Path]:
    """The login's start directory (ssftp's account root, sshd's ``internal-sftp -d``)
    mounted on ``mount_point`` with the cipher and key the ``sftp`` workloads use."""
    assert SSHFS is not None and FUSERMOUNT is not None
    mount_point.mkdir(exist_ok=True)
    subprocess.run(
        [SSHFS, f"{login.username}@{HOST}:", str(mount_point), "-p", str(login.port),
         "-o", f"IdentityFile={login.key},IdentitiesOnly=yes,BatchMode=yes,"
               f"StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,Ciphers={CIPHER}"],
        check=True, timeout=60, stdin=subprocess.DEVNULL, capture_output=True)
    try:
        yield mount_point
    finally:
        subprocess.run([FUSERMOUNT, "-u", "-z", str(mount_point)], check=False, timeout=60,
                       capture_output=True)


def _timed(command: list[str], stdout: Path | None = None) -> float:
    """Seconds ``command`` takes; an error if it fails."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
        started = time.perf_counter()
        result = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, timeout=600)
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.decode().strip()}")
    return elapsed


def _wait_for_size(path: Path, size: int, timeout: float = 60.0) -> float:
    """When ``path`` has all its bytes (perf_counter): sshfs sends the CLOSE that publishes an
    upload after ``cp`` has returned."""
    deadline = time.perf_counter() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size == size:
                return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{path} did not reach {size} bytes within {timeout:.0f} s")
        time.sleep(0.005)


def sshfs_rows(ssftp: Side, reference: Side | None, client: Path, workdir: Path,
               sizes: Sizes) -> list[Row]:
    """``cat`` of a file from a mount, ``cp`` of one into a mount (until the server has all
    of it) and ``ls -l`` of a directory of many files."""
    size, listed = sizes.sshfs_file_bytes, sizes.sshfs_listing_files
    sides = [side for side in (ssftp, reference) if side is not None]
    source = make_random_file(client / "mounted.bin", size)
    mount_point = workdir / "mnt"
    listing = client / "listing"
    listing.mkdir()
    for index in range(listed):
        (listing / f"entry-{index:05d}").touch()

    def cat(side: Side) -> float:
        with _mounted(side.downloader, mount_point):
            seconds = _timed(["cat", str(mount_point / "mounted.bin")], client / "cat.bin")
        expect_file(client / "cat.bin", size)
        (client / "cat.bin").unlink()
        return size / seconds / MB

    def copy(side: Side) -> float:
        arrived = side.upload_dir / "copied.bin"
        with _mounted(side.uploader, mount_point):
            started = time.perf_counter()
            _timed(["cp", str(source), str(mount_point / "copied.bin")])
            seconds = _wait_for_size(arrived, size) - started
        arrived.unlink()
        return size / seconds / MB

    def list_long(side: Side) -> float:
        lines = client / "ls.txt"
        with _mounted(side.downloader, mount_point):
            seconds = _timed(["ls", "-l", str(mount_point / "listing")], lines)
        found = len(lines.read_text().splitlines()) - 1  # the "total" line
        if found != listed:
            raise RuntimeError(f"ls -l through sshfs listed {found} of {listed} files")
        return seconds

    label = f"1x{size / MIB:g} MiB"
    files = {"mounted.bin": source,
             **{f"listing/{path.name}": path for path in listing.iterdir()}}
    with served(sides, files):
        rows = [
            side_row(f"sshfs cat {label}", "MB/s", Better.HIGHER,
                     alternate(sides, sizes.rounds, cat), ssftp, reference,
                     Target.ratio_at_least(1.0)),
            side_row(f"sshfs cp {label} into the mount", "MB/s", Better.HIGHER,
                     alternate(sides, sizes.rounds, copy), ssftp, reference,
                     Target.ratio_at_least(1.0), note="until the server has the whole file"),
            side_row(f"sshfs ls -l of {listed} files", "s", Better.LOWER,
                     alternate(sides, sizes.rounds, list_long), ssftp, reference,
                     Target.ratio_at_least(1.0, Better.LOWER)),
        ]
    for side in sides:
        (side.download_dir / "listing").rmdir()
    shutil.rmtree(listing)
    source.unlink()
    return rows
