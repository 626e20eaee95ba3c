"""Atomic uploads: bytes go to a hidden temp file beside the target; close publishes them.

Nothing downstream (the staging watcher, a consumer listing clean/) can ever see a partly
written file under its final name: the final name appears only by ``rename`` (or ``link`` when
the account may not overwrite, so a file that appeared meanwhile is never clobbered) after the
client closed the handle. An interrupted upload is never published: it is kept for a resume.

Resume: when the connection drops with a handle still open, the bytes received move to the
account's partial slot for that path (:func:`partial_path`, hidden like every reserved name,
removed after ``partialUploadTtlSeconds``). A later open of that path for writing without
truncate takes the slot back as its temp file and accepts only writes that continue it
(:meth:`UploadWriter.write`); its clean close publishes the whole file, which is then scanned
like any upload. Only a dropped connection is kept that way: a write that failed leaves a
file of unknown content, and is discarded (below).

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
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from server.jail import Jail
from ssftp.errors import Refused, UploadFailedError
from ssftp.layout import PARTIALS_DIR
from ssftp.moves import publish, temp_path_beside

FILE_MODE = 0o640
_PARTIALS_DIR_MODE = 0o750
# Consecutive writes the client was answered for before they reached the disk are gathered
# into one ``pwritev`` of up to this many bytes (see UploadWriter.write_behind), and buffers.
GATHER_BYTES = 1 << 20
_GATHER_BUFFERS = min(os.sysconf("SC_IOV_MAX"), 1024)


def partial_path(jail: Jail, username: str, virtual: str) -> Path:
    """Where an interrupted upload of ``virtual`` by ``username`` waits for its resume.

    Named by a hash of account and path: one slot per final name, no client-chosen name on
    disk (a long path would not fit in a name), and an account sharing the root with another
    never finds the other's partial."""
    digest = hashlib.sha256(f"{username}\0{virtual}".encode()).hexdigest()[:32]
    return jail.root / PARTIALS_DIR / digest


def stat_partial(jail: Jail, partial: Path) -> os.stat_result | None:
    """The interrupted upload waiting in ``partial``, if there is one."""
    try:
        with jail.open_parent(partial) as (directory, name):
            return os.lstat(name, dir_fd=directory)
    except FileNotFoundError:
        return None


class UploadWriter:
    """One upload. With ``partial`` (its slot, see :func:`partial_path`) an interruption is
    kept there (:meth:`suspend`); with ``resume`` too, an upload waiting there is continued."""

    def __init__(self, target: Path, jail: Jail, *, replace: bool, append: bool,
                 durable: bool, partial: Path | None = None, resume: bool = False,
                 when_idle: Callable[[Callable[[], object]], None] | None = None) -> None:
        self.target = target
        self.jail = jail
        self.replace = replace
        self.append = append
        self.durable = durable
        self.partial = partial
        # Where gathered writes are handed to be written once the session's thread has
        # nothing else to do (SessionThread.when_idle); None: every write at once.
        self._when_idle = when_idle
        self.temp = temp_path_beside(target)
        self.failure: str | None = None  # the first failed operation; the upload is then void
        # A refused write changed nothing: what is there is still a good start to resume from.
        self.resumable_failure = False
        taken = self._take_partial() if resume else None
        # Where a resumed upload continues; None for a new one.
        self.resumed_at = None if taken is None else os.fstat(taken).st_size
        self._fd = self._create() if taken is None else taken
        # Writes answered and not yet on the file (write_behind): buffers for one pwritev at
        # offset _gathered_at.
        self._gathered: list[bytes] = []
        self._gathered_at = 0
        self._gathered_bytes = 0

    @property
    def fd(self) -> int:
        """The upload's descriptor, with the writes gathered so far on it first: whoever
        reads its size or content, changes its attributes or publishes it sees every byte
        the client was answered for. A write that fails here raises, and voids the upload."""
        self._write_gathered()
        return self._fd

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
        """Write ``data`` at ``offset``; a resumed upload refuses (Refused, nothing written)
        a write that is not a continuation: before the bytes it resumed from, which are
        already here, or beyond the end so far, which would leave a hole of zeros."""
        if self.resumed_at is not None:
            self._require_continuation(offset)
        with self._remembering("write"):
            if self.append:
                offset = os.fstat(self.fd).st_size
            self._write_at(self.fd, offset, data)

    @staticmethod
    def _write_at(fd: int, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            if written == 0:  # would loop for ever; the kernel gave no reason
                raise OSError(0, f"short write ({len(view)} bytes not written)")
            offset += written
            view = view[written:]

    def write_behind(self, offset: int, data: bytes) -> None:
        """:meth:`write` for a caller that does not wait for it (server.off_loop): its
        failure voids the upload rather than being raised to nobody.

        With ``when_idle``, a write that continues the one before is gathered with it, up to
        :data:`GATHER_BYTES`, and they reach the file in one ``pwritev`` once the session's
        thread has run the calls queued (or sooner, at the limit). Each system call gives up
        the interpreter and must win it back from the event loop, which is busy decrypting
        the next WRITEs: one per WRITE (32 KiB from OpenSSH's sftp) left this thread waiting
        its turn after each. Anything else done with the file writes the gathered bytes
        first (:attr:`fd`)."""
        try:
            if self._when_idle is None or self.append or self.resumed_at is not None:
                self.write(offset, data)
                return
            if self._gathered and offset != self._gathered_at + self._gathered_bytes:
                self._write_gathered()
            if not self._gathered:
                self._gathered_at = offset
                self._when_idle(self.finish_writes)
            self._gathered.append(data)
            self._gathered_bytes += len(data)
            if (self._gathered_bytes >= GATHER_BYTES
                    or len(self._gathered) >= _GATHER_BUFFERS):
                self._write_gathered()
        except Exception as exc:  # an OSError is already remembered
            self.void(f"write failed: {exc}")

    def _write_gathered(self) -> None:
        if not self._gathered:
            return
        buffers, offset, size = self._gathered, self._gathered_at, self._gathered_bytes
        self._gathered, self._gathered_bytes = [], 0
        with self._remembering("write"):
            written = os.pwritev(self._fd, buffers, offset)
            if written < size:  # a short write: the rest one by one, to its error if any
                self._write_at(self._fd, offset + written, b"".join(buffers)[written:])

    def finish_writes(self) -> None:
        """Write what was gathered; a failure voids the upload (:meth:`commit` then refuses
        to publish it) rather than being raised."""
        with contextlib.suppress(OSError):
            self._write_gathered()

    def _require_continuation(self, offset: int) -> None:
        assert self.resumed_at is not None
        size = os.fstat(self.fd).st_size
        if self.resumed_at <= offset <= size:
            return
        if self.failure is None:
            self.failure = f"a write at byte {offset} was refused"
            self.resumable_failure = True
        raise Refused(f"this upload resumes an interrupted one of {self.resumed_at} bytes and "
                      f"has {size} now: a write at byte {offset} is not a continuation "
                      f"(write from byte {size}, or open with truncate to start over)")

    def void(self, reason: str) -> None:
        """The client saw a request about this upload fail: it is never published."""
        if self.failure is None:
            self.failure = reason

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
        self.finish_writes()
        if self.failure is not None:
            if self.resumable_failure:
                self.suspend()
            else:
                self.abort()
            raise UploadFailedError(f"upload not published: {self.failure}")
        try:
            os.close(self._fd)  # a network filesystem may report a lost write only here
        except OSError:
            self._remove_temp()
            raise
        try:
            with self.jail.open_parent(self.temp) as (directory, name):
                publish(Path(name), Path(self.target.name), replace=self.replace,
                        durable=self.durable, dir_fd=directory)
        except Refused as refusal:
            raise UploadFailedError(f"upload not published: {refusal.reason}") from None
        self._drop_partial()  # superseded by the file just published

    def abort(self) -> None:
        self._gathered, self._gathered_bytes = [], 0
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._remove_temp()

    def suspend(self) -> bool:
        """The connection is gone with the upload open: keep what was received in the
        partial slot for a resume, or discard it (nothing received, no slot, a failed write,
        or the slot out of reach). True when it was kept."""
        self.finish_writes()
        received = 0
        with contextlib.suppress(OSError):
            received = os.fstat(self._fd).st_size
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if (self.partial is not None and received > 0
                and (self.failure is None or self.resumable_failure)):
            with contextlib.suppress(OSError, Refused):
                self._keep_partial(self.partial)
                return True
        self._remove_temp()
        return False

    def _keep_partial(self, partial: Path) -> None:
        with self.jail.open_parent(partial.parent) as (root, partials), \
                contextlib.suppress(FileExistsError):
            os.mkdir(partials, _PARTIALS_DIR_MODE, dir_fd=root)
        self._move(self.temp, partial)

    def _take_partial(self) -> int | None:
        """Make the upload waiting in the partial slot this writer's temp file; its
        descriptor, or None when there is none. The rename is atomic: of two sessions that
        resume at once, one gets it, the other starts anew."""
        assert self.partial is not None
        try:
            self._move(self.partial, self.temp)
        except FileNotFoundError:
            return None
        with self.jail.open_parent(self.temp) as (directory, name):
            return os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)

    def _drop_partial(self) -> None:
        if self.partial is not None:
            with contextlib.suppress(OSError, Refused), \
                    self.jail.open_parent(self.partial) as (directory, name):
                os.unlink(name, dir_fd=directory)

    def _move(self, source: Path, target: Path) -> None:
        """Rename by the verified descriptors of both directories (see the module's doc)."""
        with self.jail.open_parent(source) as (source_dir, source_name), \
                self.jail.open_parent(target) as (target_dir, target_name):
            os.replace(source_name, target_name, src_dir_fd=source_dir, dst_dir_fd=target_dir)

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
