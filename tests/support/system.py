"""What a test needs of the machine: a filesystem it can fill (tmpfs), a process's memory and
threads from /proc, and the identity of a process that has exited."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssftp.procfs import ProcessId


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (a filesystem a test can fill up),
    unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a filesystem that can be filled) needs root")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def proc_status(pid: int, field: str) -> int:
    """A number from ``/proc/<pid>/status`` (``VmRSS`` in bytes, ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number = int(value.split()[0])
            return number * 1024 if value.strip().endswith("kB") else number
    raise AssertionError(f"no {field} for process {pid}")


class PeakSampler:
    """The highest ``field`` of a process's status while the block runs, sampled in a thread
    every 20 ms (so the peak of a probe is seen, not only what is left after it)."""

    def __init__(self, pid: int, field: str) -> None:
        self.pid, self.field = pid, field
        self.start = self.peak = proc_status(pid, field)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, proc_status(self.pid, self.field))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, proc_status(self.pid, self.field))


def dead_process_id() -> ProcessId:
    """The identity of a process that has exited (a killed ``ssftp up``)."""
    process = subprocess.Popen(["true"])
    owner = ProcessId.of(process.pid)
    process.wait()
    assert owner is not None
    return owner
