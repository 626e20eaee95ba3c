"""Processes as the kernel tells them apart, read from ``/proc`` in one place.

A pid alone names a process only while it runs: the kernel hands it to the next one after.
Claims (which scanner holds a staged file) and pid files (which daemon a start must stop) need
to know the *same* process is still there, so both use its pid with its start time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessId:
    """A process as the kernel tells it apart: its pid and when it started (clock ticks after
    boot), so a pid reused by a later process is never mistaken for the recorded one."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The process ``pid`` now, or None when there is none."""
        stat = _stat(pid)
        return None if stat is None else cls(pid, stat[1])

    @property
    def running(self) -> bool:
        """Still this process, and not a zombie (which runs no more)."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[0] != "Z"

    def argv(self) -> list[str]:
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) from /proc/<pid>/stat, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name in (...) may hold spaces
    return fields[0], int(fields[19])
