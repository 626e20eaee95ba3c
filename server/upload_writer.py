"""Atomic uploads: bytes go to a hidden temp file beside the target; close publishes them.

Nothing downstream (the staging watcher, a consumer listing clean/) can ever see a partly
written file under its final name: the final name appears only by ``rename`` (or ``link`` when
the account may not overwrite, so a file that appeared meanwhile is never clobbered) after the
client closed the handle. An interrupted upload is discarded, never published.

Nor is an upload the client saw fail: clients close the handle after a failed WRITE (a full
disk, a short write) or FSYNC as after a good one, so the writer remembers the first failure
and :meth:`UploadWriter.commit` refuses to publish what is then a truncated file.

The temp file is created, renamed into place and removed in its directory as opened and
verified by descriptor (:meth:`Jail.open_parent`), so a directory on the way that another
writer swaps for a symlink out can never receive it, nor have a file there published in its
stead. The directory is opened again for the rename rather than held open: a handle holds one
descriptor (the server's descriptor budget counts one per handle).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from server.jail import Jail
from ssftp.errors import Refused, UploadFailedError
from ssftp.moves import publish, temp_path_beside

FILE_MODE = 0o640


class UploadWriter:
    def __init__(self, target: Path, jail: Jail, *, replace: bool, append: bool,
                 durable: bool) -> None:
        self.target = target
        self.jail = jail
        self.replace = replace
        self.append = append
        self.durable = durable
        self.temp = temp_path_beside(target)
        self.failure: str | None = None  # the first failed operation; the upload is then void
        self.fd = self._create()

    @contextlib.contextmanager
    def _remembering(self, operation: str) -> Iterator[None]:
        """Let an OSError through to the client, and note it: the upload can no longer be
        complete, whatever the client does next."""
        try:
            yield
        except OSError as exc:
            if self.failure is None:
                self.failure = f"{operation} failed: {exc.strerror or exc}"
            raise

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
        with self._remembering("write"):
            if self.append:
                offset = os.fstat(self.fd).st_size
            view = memoryview(data)
            while view:
                written = os.pwrite(self.fd, view, offset)
                if written == 0:  # would loop for ever; the kernel gave no reason
                    raise OSError(0, f"short write ({len(view)} bytes not written)")
                offset += written
                view = view[written:]

    def fsync(self) -> None:
        with self._remembering("fsync"):
            os.fsync(self.fd)

    def truncate(self, size: int) -> None:
        with self._remembering("truncate"):
            os.ftruncate(self.fd, size)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def commit(self) -> None:
        """Publish under the final name; raises FileExistsError if that would clobber a file
        the account may not overwrite, and UploadFailedError after a failed write or fsync
        (in both cases the temp file is removed) or when the directory's path now leads out
        of the jail (the temp file is then out of reach, see :meth:`_remove_temp`)."""
        if self.failure is not None:
            self.abort()
            raise UploadFailedError(f"upload not published: {self.failure}")
        try:
            os.close(self.fd)  # a network filesystem may report a lost write only here
        except OSError:
            self._remove_temp()
            raise
        try:
            with self.jail.open_parent(self.temp) as (directory, name):
                publish(Path(name), Path(self.target.name), replace=self.replace,
                        durable=self.durable, dir_fd=directory)
        except Refused as refusal:
            raise UploadFailedError(f"upload not published: {refusal.reason}") from None

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self._remove_temp()

    def _create(self) -> int:
        """Create the temp file relative to its directory's verified descriptor: created by
        path, it could land outside (and be written there) after a swap on the way."""
        with self.jail.open_parent(self.temp) as (directory, name):
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, FILE_MODE, dir_fd=directory)

    def _remove_temp(self) -> None:
        """Remove the temp file in its verified directory. When that cannot be opened (gone,
        or its path now leads out of the jail) the temp file is out of reach: it stays,
        under a name no client can address, rather than a name outside being removed."""
        with contextlib.suppress(OSError, Refused), \
                self.jail.open_parent(self.temp) as (directory, name):
            os.unlink(name, dir_fd=directory)
