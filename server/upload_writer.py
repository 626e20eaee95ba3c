"""Atomic uploads: bytes go to a hidden temp file beside the target; close publishes them.

Nothing downstream (the staging watcher, a consumer listing clean/) can ever see a partly
written file under its final name: the final name appears only by ``rename`` (or ``link`` when
the account may not overwrite, so a file that appeared meanwhile is never clobbered) after the
client closed the handle. An interrupted upload is discarded, never published.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ssftp.moves import publish, temp_path_beside

FILE_MODE = 0o640


class UploadWriter:
    def __init__(self, target: Path, *, replace: bool, append: bool, durable: bool) -> None:
        self.target = target
        self.replace = replace
        self.append = append
        self.durable = durable
        self.temp = temp_path_beside(target)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.temp, flags, FILE_MODE)

    def start_from(self, existing_fd: int) -> None:
        """Begin with the current content of the target (resume, or a write without truncate)."""
        size = os.fstat(existing_fd).st_size
        offset = 0
        while offset < size:
            copied = os.copy_file_range(existing_fd, self.fd, size - offset, offset, offset)
            if copied == 0:
                break
            offset += copied

    def write(self, offset: int, data: bytes) -> None:
        if self.append:
            offset = os.fstat(self.fd).st_size
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            offset += written
            view = view[written:]

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def commit(self) -> None:
        """Publish under the final name; raises FileExistsError if that would clobber a file
        the account may not overwrite (the temp file is then removed)."""
        os.close(self.fd)
        publish(self.temp, self.target, replace=self.replace, durable=self.durable)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.temp.unlink(missing_ok=True)
