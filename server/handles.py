"""A session's handles: what each open file is, what it may hold, and the count that keeps one
session, and all of them together, within the process's file descriptors.

Every OPEN and OPENDIR takes a slot, refused beyond ``maxOpenHandles`` of the session or the
budget of all sessions (server.descriptors: each handle may hold a descriptor); a client at its
limit may retry in a loop, so each limit is logged once per session. A file's slot is held
exactly while its handle exists (:meth:`Handles.open`, :meth:`Handles.close`); a listing's while
asyncssh holds the listing, which tells the server nothing when it lets go of one.

The counts and the read-ahead are kept on the event loop; the files themselves are read and
written in the session's thread (server.off_loop).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import os
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

import asyncssh

from server.descriptors import DescriptorBudget
from server.heap import TRIM_AFTER_BYTES, give_back_memory
from server.upload import Upload
from ssftp.config.schema import LimitsSettings
from ssftp.logs import APP, TRANSFER, log_event
from ssftp.metrics import DOWNLOAD_BYTES, TRANSFERS, UPLOAD_BYTES

app_log = logging.getLogger(APP)
transfer_log = logging.getLogger(TRANSFER)

# A download read in order is read this many requests at a time, up to a limit per session
# (see ReadAhead).
READ_AHEAD_REQUESTS = 8
READ_AHEAD_LIMIT = 2 << 20
# Read with a download's OPEN, in the same trip (see ReadAhead.begin): a small file whole.
HEAD_BYTES = 64 << 10


@dataclass
class Handle(abc.ABC):
    """An open file as asyncssh holds it between OPEN and CLOSE, and the transfer it is."""

    virtual: str
    started: float = field(default_factory=time.monotonic, kw_only=True)
    bytes: int = field(default=0, kw_only=True)

    @abc.abstractmethod
    def fileno(self) -> int: ...

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """For asyncssh's ranges extension (SEEK_DATA/SEEK_HOLE, asked by its clients' get):
        every byte counts as data, the file has no holes. Answered without the filesystem,
        as asyncssh calls this on the event loop, where an lseek could hang every session
        (on FUSE and NFS 4.2 it asks the server); a sparse file is then sent whole, its holes
        as the zeros they read as. Reads and writes use explicit offsets: nothing else
        depends on a position."""
        return sys.maxsize if whence == os.SEEK_HOLE else offset


@dataclass
class DownloadHandle(Handle):
    fd: int
    # The file's first HEAD_BYTES (fewer: all of it), read with the open; the read-ahead takes
    # them when the handle is made.
    head: bytes = field(default=b"", kw_only=True)

    def fileno(self) -> int:
        return self.fd


@dataclass
class UploadHandle(Handle):
    upload: Upload
    readable: bool = False  # opened with FXF_READ, which needed the download permission

    def fileno(self) -> int:
        return self.upload.writer.fd


H = TypeVar("H", bound=Handle)


class ReadAhead:
    """What the last read of a download brought in beyond its request.

    One trip off the loop per READ cost a fifth of the download rate of a 256 MiB file (the
    session's thread waits for the interpreter while the loop handles the requests behind);
    reading the client's next requests at once when it reads in order (as every client
    downloading a whole file does, many requests ahead) keeps the trips few. At most one block
    per session is kept, the last, so memory stays bounded whatever the number of open
    handles; a client that jumps around reads only what it asks for. The block is the file as
    read then: a download's file is not written through ssftp. A block that reached the end
    of the file answers the reads up to it and beyond (end of file) too: a small file's
    reads then all come from the block read with its OPEN, without a trip off the loop.
    """

    def __init__(self) -> None:
        self._handle: DownloadHandle | None = None
        self._offset = 0
        self._data = memoryview(b"")
        self._at_end = False  # the block reaches the end of the file

    def begin(self, handle: DownloadHandle) -> None:
        """Keep the head read with ``handle``'s open (it was read up to the end when it is
        shorter than HEAD_BYTES)."""
        self.keep(handle, 0, 0, handle.head, HEAD_BYTES)
        handle.head = b""

    def take(self, handle: DownloadHandle, offset: int, size: int) -> bytes | None:
        """The request's bytes if the block has them (fewer or none at the end of the file),
        else None (then read them)."""
        start = offset - self._offset
        if handle is not self._handle or start < 0 or (
                start + size > len(self._data) and not self._at_end):
            return None
        return bytes(self._data[start:start + size])

    def length(self, handle: DownloadHandle, offset: int, size: int) -> int:
        """How much to read for a request: more when it starts the file or goes on from the
        block kept."""
        if offset == 0 or (handle is self._handle
                           and self._offset <= offset <= self._offset + len(self._data)):
            return max(size, min(size * READ_AHEAD_REQUESTS, READ_AHEAD_LIMIT))
        return size

    def keep(self, handle: DownloadHandle, offset: int, size: int, block: bytes,
             asked: int) -> bytes:
        """The request's bytes out of ``block`` (``asked`` bytes read at ``offset``, fewer at
        the end of the file); the rest is kept when there is some (a view of it keeps the
        whole block alive), and the end of the file when the block reached it."""
        data = block[:size]
        at_end = len(block) < asked
        if len(block) > len(data) or at_end:
            self._handle, self._offset, self._at_end = handle, offset + len(data), at_end
            self._data = memoryview(block)[len(data):] if len(block) > len(data) \
                else memoryview(b"")
        else:
            self._clear()
        return data

    def forget(self, handle: DownloadHandle) -> None:
        """Let go of the block of a handle that is closed."""
        if handle is self._handle:
            self._clear()

    def _clear(self) -> None:
        self._handle, self._offset, self._data, self._at_end = None, 0, memoryview(b""), False


class Handles:
    """The handles of one session, for the account ``username`` at ``ip`` (whom the logs
    name). ``limits`` is asked at each OPEN and OPENDIR, so that a reload applies to the
    session's next one."""

    def __init__(self, username: str, ip: str, limits: Callable[[], LimitsSettings],
                 budget: DescriptorBudget) -> None:
        self._username = username
        self._ip = ip
        self._limits = limits
        self._budget = budget
        self._files = 0
        # Counted while they exist: CPython frees a listing the moment asyncssh lets go of it.
        self._listings: weakref.WeakSet[object] = weakref.WeakSet()
        self._limits_logged: set[str] = set()
        # This session's open uploads by virtual path: seen by it alone (STAT, SETSTAT by path).
        self._uploads: dict[str, UploadHandle] = {}
        self.ahead = ReadAhead()

    async def open(self, path: bytes, opening: Callable[[], Awaitable[H]]) -> H:
        """The handle ``opening`` makes, in a slot taken before it runs (nothing is opened
        beyond the limits) and given back if it fails."""
        self._reserve("open", path)
        try:
            handle = await opening()
        except BaseException:
            self._budget.release_file()
            raise
        self._files += 1
        if isinstance(handle, UploadHandle):
            self._uploads[handle.virtual] = handle
        elif isinstance(handle, DownloadHandle):
            self.ahead.begin(handle)
        return handle

    def add_listing(self, path: bytes, listing: object) -> None:
        """Count ``listing`` while it exists, or refuse it."""
        self._reserve("opendir", path, listing)
        self._listings.add(listing)

    def close(self, handle: Handle) -> None:
        """Give back the slot of a handle asyncssh has dropped (whatever its close does next)."""
        self._files -= 1
        self._budget.release_file()
        if isinstance(handle, UploadHandle):
            if self._uploads.get(handle.virtual) is handle:
                del self._uploads[handle.virtual]
        elif isinstance(handle, DownloadHandle):
            self.ahead.forget(handle)

    def upload_at(self, virtual: str) -> UploadHandle | None:
        """The upload this session is writing at ``virtual``, if any (the latest one opened)."""
        return self._uploads.get(virtual)

    def log_transfer(self, handle: Handle, error: str | None) -> None:
        """Count a finished transfer and log it once the close reply is on its way.

        close() returns before asyncssh sends the reply; writing the record (to stdout and
        the log files) in the next turn of the loop overlaps it with the client's next step
        instead of delaying the reply (a tenth of the server's time per small upload).
        """
        direction = "upload" if isinstance(handle, UploadHandle) else "download"
        (UPLOAD_BYTES if direction == "upload" else DOWNLOAD_BYTES).inc(handle.bytes)
        TRANSFERS.inc(direction, "ok" if error is None else "failed")
        asyncio.get_running_loop().call_soon(functools.partial(
            log_event, transfer_log, "transfer",
            logging.INFO if error is None else logging.WARNING,
            direction=direction, user=self._username, ip=self._ip,
            path=handle.virtual, bytes=handle.bytes,
            ms=round((time.monotonic() - handle.started) * 1000, 1),
            ok=error is None, error=error))
        if handle.bytes >= TRIM_AFTER_BYTES:
            asyncio.get_running_loop().call_soon(give_back_memory)

    def _reserve(self, operation: str, path: bytes, listing: object | None = None) -> None:
        limit = self._limits().max_open_handles
        if self._files + len(self._listings) >= limit:
            self._refuse(operation, path, "maxOpenHandles", limit,
                         f"too many open handles ({limit})")
        if not self._budget.take_handle(listing):
            self._refuse(operation, path, "processHandles", self._budget.handles,
                         f"server is busy: too many open handles in all sessions "
                         f"({self._budget.handles}); try again later")

    def _refuse(self, operation: str, path: bytes, limit: str, value: int,
                reason: str) -> NoReturn:
        if limit not in self._limits_logged:
            self._limits_logged.add(limit)
            log_event(app_log, "limit reached", logging.WARNING, user=self._username,
                      ip=self._ip, op=operation, path=path.decode("utf-8", "replace"),
                      limit=limit, value=value)
        raise asyncssh.SFTPFailure(reason)
