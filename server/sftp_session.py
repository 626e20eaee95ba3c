"""One SFTP session: each client request passes the jail and the permission check, then acts.

The base class's path mapping is disabled (it fails closed), so every operation the server
supports is one of the methods below and no request can reach the disk unchecked. A refusal is
logged and answered with SSH_FX_PERMISSION_DENIED; filesystem errors keep their own codes.
Whatever touches the disk runs in the session's own thread, never on the event loop that every
session shares (server.off_loop): a hung filesystem holds only the sessions that use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import stat
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NoReturn

import asyncssh
from asyncssh import SFTPAttrs, SFTPName
from asyncssh.sftp import MAX_SFTP_READ_LEN

from server.compat import stderr_notices
from server.descriptors import process_budget
from server.in_flight import ChannelBytes
from server.jail import Jail, JailPath, chmod_name
from server.log_summary import MAX_KEYS, REFUSAL_LOG_SECONDS, LogSummary
from server.off_loop import SessionThread, off_loop, run_off_loop
from server.recent_uploads import recent_uploads
from server.upload_writer import UploadWriter, partial_path, stat_partial
from server.verdict_wait import PublishedFile, VerdictWatch, verdict_at_close
from ssftp.config.accounts import Account
from ssftp.config.schema import LimitsSettings
from ssftp.errors import Refused, UploadFailedError
from ssftp.layout import is_partial_upload_name, is_reserved_name
from ssftp.logs import APP, TRANSFER, log_event
from ssftp.metrics import DOWNLOAD_BYTES, TRANSFERS, UPLOAD_BYTES
from ssftp.moves import proc_path
from ssftp.permissions import Permission

app_log = logging.getLogger(APP)
transfer_log = logging.getLogger(TRANSFER)

DIR_MODE = 0o750

# C0 controls and DEL: a name holding one (a newline above all) forges lines in every log and
# listing that prints it, and breaks the scripts that read them.
_CONTROL_CHARACTERS = frozenset(chr(code) for code in (*range(0x20), 0x7F))

_LISTING_BATCH = 64  # entries per trip off the loop (see _next_names); asyncssh sends 128
# A download read in order is read this many requests at a time, up to a limit per session
# (see SFTPSession._read_download).
_READ_AHEAD_REQUESTS = 8
_READ_AHEAD_LIMIT = 2 << 20
# The largest READ served: what asyncssh tells clients it serves (limits@openssh.com), so those
# that ask are never cut short; asyncssh's clients read 4 MiB blocks, OpenSSH's 255 KiB.
MAX_READ_BYTES = MAX_SFTP_READ_LEN


@dataclass(frozen=True)
class SessionContext:
    """What a session knows about who is on the other end, fixed at login."""

    account: Account
    ip: str
    durable_uploads: bool = True
    # Asked at each OPEN and OPENDIR, so that a reload applies to the session's next one.
    limits: Callable[[], LimitsSettings] = LimitsSettings
    # scanning.verdictOnClose (server.verdict_wait); None where nothing scans (portable mode).
    verdicts: VerdictWatch | None = None
    # The connection's refused requests, logged in summary (on the event loop).
    refusals: LogSummary = field(
        default_factory=lambda: LogSummary(REFUSAL_LOG_SECONDS, MAX_KEYS))


@dataclass
class _Handle:
    virtual: str
    started: float = field(default_factory=time.monotonic)
    bytes: int = 0

    def fileno(self) -> int:
        raise NotImplementedError

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """For asyncssh's ranges extension (SEEK_DATA/SEEK_HOLE, asked by its clients' get):
        every byte counts as data, the file has no holes. Answered without the filesystem,
        as asyncssh calls this on the event loop, where an lseek could hang every session
        (on FUSE and NFS 4.2 it asks the server); a sparse file is then sent whole, its holes
        as the zeros they read as. Reads and writes use explicit offsets: nothing else
        depends on a position."""
        return sys.maxsize if whence == os.SEEK_HOLE else offset


@dataclass
class DownloadHandle(_Handle):
    fd: int = -1

    def fileno(self) -> int:
        return self.fd


@dataclass
class UploadHandle(_Handle):
    writer: UploadWriter | None = None
    readable: bool = False  # opened with FXF_READ, which needed the download permission

    def fileno(self) -> int:
        assert self.writer is not None
        return self.writer.fd


@dataclass
class _ReadAhead:
    """What the last read of a download brought in beyond the request: ``data`` is the file
    from ``offset`` on, as read then (a download's file is not written through ssftp)."""

    handle: DownloadHandle | None = None
    offset: int = 0
    data: memoryview = field(default_factory=lambda: memoryview(b""))

    def take(self, handle: DownloadHandle, offset: int, size: int) -> bytes:
        """The request's bytes if all of them are here, else b"" (then read them)."""
        start = offset - self.offset
        if handle is not self.handle or start < 0 or start + size > len(self.data):
            return b""
        return bytes(self.data[start:start + size])

    def follows(self, handle: DownloadHandle, offset: int) -> bool:
        """Whether a read at ``offset`` goes on from here: the client reads in order."""
        return handle is self.handle and self.offset <= offset <= self.offset + len(self.data)


def _client_has_left(channel: asyncssh.SSHServerChannel[bytes]) -> bool:
    """True once no further request can arrive from the client.

    ``is_closing()`` covers a dropped connection and our own close, but not a client that sent
    EOF or CLOSE on the channel (OpenSSH's ssh does this when the sftp process above it is
    killed). asyncssh has no public accessor for the receive side, so its ``_recv_state`` is
    read; asyncssh is pinned, and a missing attribute counts as "left" (fail closed).
    """
    return channel.is_closing() or getattr(channel, "_recv_state", "gone") != "open"


class SFTPSession(asyncssh.SFTPServer):
    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], context: SessionContext,
                 flow: ChannelBytes) -> None:
        super().__init__(chan)
        self.context = context
        self._flow = flow  # the channel's part of its connection's bytes in flight
        self._loop = asyncio.get_running_loop()
        self.account = context.account
        self._jail: Jail | None = None
        self.permissions = context.account.permissions
        self._open_files = 0
        self._listings: weakref.WeakSet[AsyncIterator[SFTPName]] = weakref.WeakSet()
        self._limits_logged: set[str] = set()
        # Every call that touches the disk runs there (server.off_loop). The handle counts,
        # the listings and the budget shared by all sessions stay with the event loop.
        self.executor = SessionThread()
        self._ahead = _ReadAhead()
        self._show_refusal = stderr_notices(chan)
        # This session's open uploads by virtual path: visible to it alone (see _stat_or_upload).
        self._uploads: dict[str, UploadHandle] = {}

    @property
    def jail(self) -> Jail:
        """Made on first use, which is in the session's thread (every path operation is):
        creating and resolving the account root touches the filesystem it is on, which may be
        the one that hangs. (Not functools.cached_property: on Python 3.11 its lock is one for
        all instances, so one session's hung root would hold up every other session's.)"""
        if self._jail is None:
            root = self.account.root
            root.mkdir(parents=True, exist_ok=True)
            self._jail = Jail(root)
        return self._jail

    # -- bookkeeping ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _checked(self, operation: str, path: bytes) -> Iterator[None]:
        """Turn a policy refusal into a logged SSH_FX_PERMISSION_DENIED, its reason also
        written on the session's stderr (server.compat: most clients show only the code).
        Logged in summary per operation and reason (server.log_summary): a client looping on
        a refusal must not fill the disk with the same line."""
        try:
            yield
        except Refused as refusal:
            shown = path.decode("utf-8", "replace")
            self.log_refusal((operation, refusal.reason), "refused", op=operation, path=shown,
                             reason=refusal.reason)
            self._show_refusal(operation, shown, refusal.reason)
            raise asyncssh.SFTPPermissionDenied(refusal.reason) from None

    def log_refusal(self, key: tuple[str, ...], event: str, **fields: str | int) -> None:
        """Log a refusal in the connection's summary, from the session's thread or the loop
        (the line is written on the loop, where the summary's timers are)."""
        line = functools.partial(self.context.refusals.log, key, event, logging.WARNING,
                                 user=self.account.username, ip=self.context.ip, **fields)
        # The loop is closed if the server stopped while this session's call hung.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(line)

    def _log_transfer(self, direction: str, handle: _Handle, error: str | None) -> None:
        """Log a finished transfer once the close reply is on its way.

        close() returns before asyncssh sends the reply; writing the record (to stdout and
        the log files) in the next turn of the loop overlaps it with the client's next step
        instead of delaying the reply (a tenth of the server's time per small upload).
        The metrics count the same transfer: its bytes and its result.
        """
        (UPLOAD_BYTES if direction == "upload" else DOWNLOAD_BYTES).inc(handle.bytes)
        TRANSFERS.inc(direction, "ok" if error is None else "failed")
        asyncio.get_running_loop().call_soon(functools.partial(
            log_event, transfer_log, "transfer",
            logging.INFO if error is None else logging.WARNING,
            direction=direction, user=self.account.username, ip=self.context.ip,
            path=handle.virtual, bytes=handle.bytes,
            ms=round((time.monotonic() - handle.started) * 1000, 1),
            ok=error is None, error=error))

    def _reserve_handle(self, operation: str, path: bytes,
                        listing: AsyncIterator[SFTPName] | None = None) -> None:
        """Take a slot for a new OPEN (given back at close) or OPENDIR (``listing``, counted
        while it exists), or refuse: beyond ``maxOpenHandles`` of this session, or beyond the
        budget of all sessions (every handle may hold one of the process's descriptors, see
        server.descriptors). Each limit is logged once per session (a client at its limit
        may retry in a loop)."""
        limit = self.context.limits().max_open_handles
        if self._open_files + len(self._listings) >= limit:
            self._refuse_handle(operation, path, "maxOpenHandles", limit,
                                f"too many open handles ({limit})")
        budget = process_budget()
        if not budget.take_handle(listing):
            self._refuse_handle(operation, path, "processHandles", budget.handles,
                                f"server is busy: too many open handles in all sessions "
                                f"({budget.handles}); try again later")

    def _refuse_handle(self, operation: str, path: bytes, limit: str, value: int,
                       reason: str) -> NoReturn:
        if limit not in self._limits_logged:
            self._limits_logged.add(limit)
            log_event(app_log, "limit reached", logging.WARNING, user=self.account.username,
                      ip=self.context.ip, op=operation, path=path.decode("utf-8", "replace"),
                      limit=limit, value=value)
        raise asyncssh.SFTPFailure(reason)

    def format_user(self, uid: int | None) -> str:
        return self.account.username  # never reveal host account names

    def format_group(self, gid: int | None) -> str:
        return "ssftp"

    def map_path(self, path: bytes) -> bytes:
        raise asyncssh.SFTPPermissionDenied("operation not supported")

    # -- paths -----------------------------------------------------------------------------

    @off_loop
    def realpath(self, path: bytes) -> bytes:
        with self._checked("realpath", path):
            return self.jail.to_virtual(self.jail.resolve(path).host).encode()

    @off_loop
    def stat(self, path: bytes) -> SFTPAttrs:
        with self._checked("stat", path), self._voiding_own_upload("stat", path):
            self.permissions.require(Permission.LIST, "stat")
            target = self.jail.resolve(path)
            return _shown_attrs(self._stat_or_upload(target, self._stat_following))

    @off_loop
    def lstat(self, path: bytes) -> SFTPAttrs:
        with self._checked("lstat", path), self._voiding_own_upload("lstat", path):
            self.permissions.require(Permission.LIST, "stat")
            target = self.jail.resolve(path, follow_final=False)
            return _shown_attrs(self._stat_or_upload(target, self._stat_not_following))

    def _stat_or_upload(self, target: JailPath,
                        stat_on_disk: Callable[[Path], os.stat_result]) -> os.stat_result:
        """What a client sees at a path: the upload this session is writing there (sshfs
        LSTATs the file it has just created before it writes, and gives up when it is not
        there), else what is on disk, else the account's interrupted upload of that path
        (``sftp reput``, ``lftp put -c`` and ``curl -C -`` ask its size to resume from). An
        upload in progress is never listed, nor seen by another account or the scanner."""
        own = self._uploads.get(target.virtual)
        if own is not None:
            return os.fstat(own.fileno())
        try:
            return stat_on_disk(target.host)
        except FileNotFoundError:
            interrupted = stat_partial(self.jail, self._partial_path(target))
            if interrupted is None:
                raise
            return interrupted

    @contextlib.contextmanager
    def _voiding_own_upload(self, operation: str, path: bytes) -> Iterator[None]:
        """A failed STAT/LSTAT of the file this session is writing voids that upload: sshfs
        then fails the create and closes the handle as after a success, which must not
        publish an empty file. (The client saw an error about that very file.)"""
        try:
            yield
        except Exception:
            with contextlib.suppress(Refused):
                own = self._uploads.get(self.jail.virtual(path))
                if own is not None and own.writer is not None:
                    own.writer.void(f"{operation} of the file was refused or failed")
            raise

    def _partial_path(self, target: JailPath) -> Path:
        return partial_path(self.jail, self.account.username, target.virtual)

    def _stat_following(self, host: Path) -> os.stat_result:
        with self.jail.open_path(host) as fd:
            return os.fstat(fd)

    def _stat_not_following(self, host: Path) -> os.stat_result:
        with self.jail.open_parent(host) as (directory, name):
            return os.lstat(name, dir_fd=directory)

    def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        """OPENDIR: asyncssh keeps what this returns as the handle until CLOSE (or the end of
        the session) drops it, and tells the server nothing then; the weak set of listings
        is their count, as CPython frees the object the moment asyncssh lets go of it."""
        listing = self._listing(path)  # not started: nothing is opened before the check
        self._reserve_handle("opendir", path, listing)
        self._listings.add(listing)
        return listing

    async def _listing(self, path: bytes) -> AsyncIterator[SFTPName]:
        fd, here, entries = await self._open_listing(path)
        # Closing a directory on the loop is safe: it frees memory and descriptors, and no
        # filesystem (NFS, FUSE) waits for its server to let a directory go.
        try:
            with entries:
                yield SFTPName(b".", attrs=here)
                yield SFTPName(b"..", attrs=here)
                while names := await run_off_loop(self.executor, _next_names, entries):
                    for name in names:
                        yield name
        finally:
            os.close(fd)  # the entries stat relative to it

    @off_loop
    def _open_listing(self, path: bytes,
                      ) -> tuple[int, SFTPAttrs, os._ScandirIterator[str]]:
        """The checks and the open of a listing, at its first READDIR (asyncssh's OPENDIR
        only keeps the generator)."""
        with self._checked("list", path):
            self.permissions.require(Permission.LIST, "listing a directory")
            fd = self.jail.open_directory(self.jail.resolve(path).host)
        try:
            return fd, _shown_attrs(os.fstat(fd)), os.scandir(fd)
        except BaseException:
            os.close(fd)
            raise

    @off_loop
    def readlink(self, path: bytes) -> bytes:
        with self._checked("readlink", path):
            self.permissions.require(Permission.LIST, "reading a link")
            link = self.jail.resolve(path, follow_final=False)
            with self.jail.open_parent(link.host) as (directory, name):
                try:
                    text = os.readlink(name, dir_fd=directory)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOENT):
                        raise
                    raise asyncssh.SFTPNoSuchFile("not a symbolic link") from None
                # Relative to the directory where the link really is (its descriptor's).
                here = os.readlink(proc_path(directory))
            return self.jail.to_virtual(os.path.realpath(os.path.join(here, text))).encode()

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        with self._checked("symlink", newpath):
            raise Refused("creating links is not allowed")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        with self._checked("link", newpath):
            raise Refused("creating links is not allowed")

    @off_loop
    def statvfs(self, path: bytes) -> os.statvfs_result:
        with self._checked("statvfs", path):
            self.permissions.require(Permission.LIST, "statvfs")
            with self.jail.open_path(self.jail.resolve(path).host) as fd:
                return os.fstatvfs(fd)

    # -- directories -------------------------------------------------------------------

    @off_loop
    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        with self._checked("mkdir", path):
            self.permissions.require(Permission.CREATE_DIRS, "creating a directory")
            target = self.jail.resolve(path, follow_final=False)
            _require_printable_name(target)
            with self.jail.open_parent(target.host) as (directory, name):
                os.mkdir(name, DIR_MODE, dir_fd=directory)

    @off_loop
    def rmdir(self, path: bytes) -> None:
        with self._checked("rmdir", path):
            self.permissions.require(Permission.DELETE, "removing a directory")
            target = self.jail.resolve(path, follow_final=False)
            if target.virtual == "/":
                raise Refused("the home directory cannot be removed")
            with self.jail.open_parent(target.host) as (directory, name):
                os.rmdir(name, dir_fd=directory)

    # -- files: removing and renaming --------------------------------------------------

    def _require_own_partial_or(self, permission: Permission, target: JailPath,
                                action: str) -> None:
        """A client's own in-progress upload (``*.filepart``) needs only ``upload``."""
        if is_partial_upload_name(target.name) and Permission.UPLOAD in self.permissions:
            return
        self.permissions.require(permission, action)

    @off_loop
    def remove(self, path: bytes) -> None:
        with self._checked("remove", path):
            target = self.jail.resolve(path, follow_final=False)
            self._require_own_partial_or(Permission.DELETE, target, "deleting a file")
            with self.jail.open_parent(target.host) as (directory, name):
                if stat.S_ISDIR(os.lstat(name, dir_fd=directory).st_mode):
                    raise asyncssh.SFTPFileIsADirectory("is a directory")
                os.unlink(name, dir_fd=directory)

    def _rename(self, oldpath: bytes, newpath: bytes, *, replace: bool) -> None:
        with self._checked("rename", oldpath):
            source = self.jail.resolve(oldpath, follow_final=False)
            target = self.jail.resolve(newpath, follow_final=False)
            if source.virtual == "/":
                raise Refused("the home directory cannot be renamed")
            _require_printable_name(target)
            finishing_upload = (is_partial_upload_name(source.name)
                                and not is_partial_upload_name(target.name))
            if finishing_upload:
                self._require_own_partial_or(Permission.RENAME, source, "renaming")
            else:
                self.permissions.require(Permission.RENAME, "renaming")
            with self.jail.open_parent(source.host) as (source_dir, source_name), \
                    self.jail.open_parent(target.host) as (target_dir, target_name):
                try:
                    os.lstat(target_name, dir_fd=target_dir)
                except FileNotFoundError:
                    move = os.rename
                else:
                    if not replace:
                        raise asyncssh.SFTPFileAlreadyExists("target already exists")
                    self.permissions.require(Permission.OVERWRITE, "replacing an existing file")
                    move = os.replace
                move(source_name, target_name, src_dir_fd=source_dir, dst_dir_fd=target_dir)

    @off_loop
    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._rename(oldpath, newpath, replace=False)

    @off_loop
    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._rename(oldpath, newpath, replace=True)

    # -- files: attributes -------------------------------------------------------------

    def _require_attrs_allowed(self, attrs: SFTPAttrs, *, own_upload: bool,
                               just_uploaded: bool) -> None:
        """Refuse the whole request before changing anything when one attribute may not change.

        Ownership never changes; a published file's size cannot change in place (it may be
        waiting for, or past, its scan); mode and times need ``chmod`` and ``chtimes``, except
        on the account's own upload in progress (``put -p`` sets them on the open handle) or
        just published (``just_uploaded``: set by path after the close, see
        server.recent_uploads). A refusal is a real SSH_FX_PERMISSION_DENIED, never an OK
        that did nothing: a client that keeps mtimes must learn they were lost.
        """
        if attrs.uid is not None or attrs.gid is not None:
            raise Refused("changing a file's owner is never allowed")
        if attrs.size is not None and not own_upload:
            raise Refused("changing a file's size in place is not allowed; upload it again")
        own = own_upload or just_uploaded
        if attrs.permissions is not None and not own:
            self.permissions.require(Permission.CHMOD, "changing permissions")
        if (attrs.atime is not None or attrs.mtime is not None) and not own:
            self.permissions.require(Permission.CHTIMES, "changing times")

    @staticmethod
    def _apply_attrs(target: int | Path, attrs: SFTPAttrs) -> None:
        if attrs.permissions is not None:
            os.chmod(target, _mode(attrs.permissions))
        if attrs.mtime is not None:
            os.utime(target, _times(attrs))

    @off_loop
    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        with self._checked("setstat", path):
            target = self.jail.resolve(path)
            writing = self._uploads.get(target.virtual)
            if writing is not None:  # sshfs sets times by path on the file it is writing
                self._set_handle_attrs(writing, attrs)
                return
            if not self._set_recent_upload_attrs(target.host, attrs):
                self._setstat_on_disk(target.host, attrs)

    def _set_recent_upload_attrs(self, host: Path, attrs: SFTPAttrs) -> bool:
        """Set the attributes of this account's upload of the last moments at ``host``
        (server.recent_uploads) if the name still holds it; False when it does not (another
        file is there, or none: the scanner has claimed it, and the caller answers no such
        file).

        By the name in its verified directory, without following a link, not through a
        descriptor of the file: the scanner's claim renames the file away, and a change that
        reached the claimed file during its scan would make the scanner retry it (a client
        repeating SETSTAT, for ever). A claim between the check and the change leaves the
        name empty, and the change fails with no such file.
        """
        identity = recent_uploads().identity(self.account.username, host)
        if identity is None:
            return False
        with self.jail.open_parent(host) as (directory, name):
            try:
                info = os.lstat(name, dir_fd=directory)
            except FileNotFoundError:
                return False
            if (info.st_dev, info.st_ino) != identity:
                return False
            self._require_attrs_allowed(attrs, own_upload=False, just_uploaded=True)
            if attrs.permissions is not None:
                chmod_name(directory, name, _mode(attrs.permissions))
            if attrs.mtime is not None:
                os.utime(name, _times(attrs), dir_fd=directory, follow_symlinks=False)
        return True

    def _setstat_on_disk(self, host: Path, attrs: SFTPAttrs) -> None:
        with self.jail.open_path(host) as fd:
            if (Permission.CHMOD not in self.permissions and _only_mode(attrs)
                    and stat.S_ISDIR(os.fstat(fd).st_mode)):
                # Refused, yet answered OK (nothing is changed), for compatibility: OpenSSH's
                # ``put -r`` sets the mode of every directory it uploaded this way and prints
                # an error for each refusal. A directory's mode is ssftp's, not the partner's.
                return
            self._require_attrs_allowed(attrs, own_upload=False, just_uploaded=False)
            # By the descriptor's /proc name: fchmod and futimens refuse an O_PATH one.
            self._apply_attrs(Path(proc_path(fd)), attrs)

    @off_loop
    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        handle = self._handle(file_obj)
        with self._checked("setstat", handle.virtual.encode()):
            self._set_handle_attrs(handle, attrs)

    def _set_handle_attrs(self, handle: DownloadHandle | UploadHandle,
                          attrs: SFTPAttrs) -> None:
        self._require_attrs_allowed(attrs, own_upload=isinstance(handle, UploadHandle),
                                    just_uploaded=False)
        if attrs.size is not None:
            assert isinstance(handle, UploadHandle) and handle.writer is not None
            handle.writer.truncate(attrs.size)
        self._apply_attrs(handle.fileno(), attrs)

    def _commit(self, writer: UploadWriter, follow: bool) -> PublishedFile | None:
        """Publish an upload and remember it for a while (server.recent_uploads), by its
        identity taken before the rename: the scanner may claim the file at once. With
        ``follow``, the published file to wait for the verdict of (the caller closes it); its
        descriptor too is taken before, as a failure after the publish must not fail it."""
        info = os.fstat(writer.fd)
        followed = os.open(proc_path(writer.fd), os.O_PATH | os.O_CLOEXEC) if follow else None
        try:
            writer.commit()
        except BaseException:
            if followed is not None:
                os.close(followed)
            raise
        recent_uploads().remember(self.account.username, writer.target,
                                  (info.st_dev, info.st_ino))
        if followed is None:
            return None
        assert self.context.verdicts is not None
        return PublishedFile.just_published(followed, writer.target, self.context.verdicts.areas)

    @off_loop
    def fstat(self, file_obj: object) -> SFTPAttrs:
        return _shown_attrs(os.fstat(self._handle(file_obj).fileno()))

    @off_loop
    def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        return os.fstatvfs(self._handle(file_obj).fileno())

    # -- files: open, read, write, close -----------------------------------------------

    @staticmethod
    def _handle(file_obj: object) -> DownloadHandle | UploadHandle:
        if not isinstance(file_obj, DownloadHandle | UploadHandle):
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        return file_obj

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        self._reserve_handle("open", path)
        try:
            handle = await self._opened(path, pflags)
        except BaseException:
            process_budget().release_file()  # nothing was opened
            raise
        self._open_files += 1
        if isinstance(handle, UploadHandle):
            self._uploads[handle.virtual] = handle
        return handle

    @off_loop
    def _opened(self, path: bytes, pflags: int) -> DownloadHandle | UploadHandle:
        with self._checked("open", path):
            return (self._open_upload(path, pflags) if pflags & asyncssh.FXF_WRITE
                    else self._open_download(path))

    def _open_regular(self, host: Path, flags: int) -> int:
        """Open an existing regular file inside the jail that has no other hard link (which
        could be an alias of a file outside the jail).

        O_NONBLOCK makes the open itself return at once whatever is there: a FIFO would
        otherwise block this thread (the event loop, every session) until a writer comes.
        The type is then checked on the descriptor, which cannot change under us; blocking
        mode is restored for the regular file that passes. Where it is, is checked on the
        descriptor too (a directory on the way may have become a symlink out since resolve).
        """
        fd = os.open(host, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self.jail.verify_fd(fd)
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise asyncssh.SFTPFileIsADirectory("is a directory")
            if not stat.S_ISREG(info.st_mode):
                raise Refused("not a regular file (a FIFO, socket or device): cannot be opened")
            if info.st_nlink != 1:
                raise Refused("a file with other hard links cannot be opened")
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_download(self, path: bytes) -> DownloadHandle:
        self.permissions.require(Permission.DOWNLOAD, "downloading")
        target = self.jail.resolve(path)
        return DownloadHandle(target.virtual, fd=self._open_regular(target.host, os.O_RDONLY))

    def _open_upload(self, path: bytes, pflags: int) -> UploadHandle:
        self.permissions.require(Permission.UPLOAD, "uploading")
        if pflags & asyncssh.FXF_READ:
            self.permissions.require(Permission.DOWNLOAD, "opening for reading")
        target = self.jail.resolve(path)
        _require_printable_name(target)
        exists = os.path.lexists(target.host)
        partial = self._partial_path(target)
        # Without truncate (or exclusive create) an open continues the account's interrupted
        # upload of this path, if one waits: see server.upload_writer.
        resume = (not exists and not pflags & (asyncssh.FXF_TRUNC | asyncssh.FXF_EXCL)
                  and stat_partial(self.jail, partial) is not None)
        if exists:
            if pflags & asyncssh.FXF_EXCL:
                raise asyncssh.SFTPFileAlreadyExists("file already exists")
            if target.host.is_dir():
                raise asyncssh.SFTPFileIsADirectory("is a directory")
            self._require_own_partial_or(Permission.OVERWRITE, target,
                                         "replacing an existing file")
        elif not pflags & asyncssh.FXF_CREAT and not resume:
            raise asyncssh.SFTPNoSuchFile("no such file")
        writer = UploadWriter(
            target.host, self.jail,
            replace=exists or Permission.OVERWRITE in self.permissions,
            append=bool(pflags & asyncssh.FXF_APPEND),
            durable=self.context.durable_uploads,
            partial=partial, resume=resume,
        )
        if exists and not pflags & asyncssh.FXF_TRUNC:
            try:
                existing = self._open_regular(target.host, os.O_RDONLY)
                try:
                    writer.start_from(existing)
                finally:
                    os.close(existing)
            except BaseException:
                writer.abort()
                raise
        return UploadHandle(target.virtual, writer=writer,
                            readable=bool(pflags & asyncssh.FXF_READ))

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """A READ, of at most :data:`MAX_READ_BYTES` (a shorter reply is legal; clients ask
        again for the rest), once its connection has room for the reply (server.in_flight):
        a READ of 2 GiB no longer reads the whole file into one reply."""
        handle = self._handle(file_obj)
        size = min(size, MAX_READ_BYTES)
        await self._flow.reserve(size)
        if isinstance(handle, UploadHandle):
            data = await self._read_upload(handle, offset, size)
        else:
            data = self._ahead.take(handle, offset, size) or await self._read_download(
                handle, offset, size)
        self._flow.shrink(len(data))
        handle.bytes += len(data)
        return data

    @off_loop
    def _read_upload(self, handle: UploadHandle, offset: int, size: int) -> bytes:
        if not handle.readable:
            with self._checked("read", handle.virtual.encode()):
                raise Refused("file is not open for reading")
        assert handle.writer is not None
        return handle.writer.read(offset, size)

    async def _read_download(self, handle: DownloadHandle, offset: int, size: int) -> bytes:
        """Read a download, and while at it, the client's next requests when it reads the
        file in order (as every client downloading a whole file does, many requests ahead).

        One trip off the loop per READ cost a fifth of the download rate of a 256 MiB file
        (the session's thread waits for the interpreter while the loop handles the requests
        behind); reading up to ``_READ_AHEAD_REQUESTS`` at once keeps the trips few. At most
        one block per session is kept, the last, so memory stays bounded whatever the
        number of open handles; a client that jumps around reads only what it asks for.
        """
        length = size
        if offset == 0 or self._ahead.follows(handle, offset):
            length = max(size, min(size * _READ_AHEAD_REQUESTS, _READ_AHEAD_LIMIT))
        block = await run_off_loop(self.executor, os.pread, handle.fd, length, offset)
        data = block[:size]
        # Only a block with more in it is kept: a view of the rest keeps the whole block.
        self._ahead = (_ReadAhead(handle, offset + len(data), memoryview(block)[len(data):])
                       if len(block) > len(data) else _ReadAhead())
        return data

    @off_loop
    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        handle = self._handle(file_obj)
        if not isinstance(handle, UploadHandle):
            raise asyncssh.SFTPPermissionDenied("file is not open for writing")
        assert handle.writer is not None
        with self._checked("write", handle.virtual.encode()):
            handle.writer.write(offset, data)
        handle.bytes += len(data)
        return len(data)

    @off_loop
    def fsync(self, file_obj: object) -> None:
        handle = self._handle(file_obj)
        if isinstance(handle, UploadHandle):
            assert handle.writer is not None
            handle.writer.fsync()
        else:
            os.fsync(handle.fd)

    async def close(self, file_obj: object) -> None:
        handle = self._handle(file_obj)
        self._open_files -= 1  # asyncssh has dropped the handle, whatever happens below
        process_budget().release_file()
        if isinstance(handle, DownloadHandle):
            if self._ahead.handle is handle:
                self._ahead = _ReadAhead()
            await run_off_loop(self.executor, os.close, handle.fd)  # FUSE flushes on close
            self._log_transfer("download", handle, None)
            return
        assert handle.writer is not None
        if self._uploads.get(handle.virtual) is handle:
            del self._uploads[handle.virtual]
        # asyncssh also calls close() for handles still open when the session ends: that is
        # an interrupted upload, which must never appear under its final name (it is kept,
        # hidden, for a resume).
        if _client_has_left(self.channel):
            kept = await run_off_loop(self.executor, handle.writer.suspend)
            self._log_transfer("upload", handle, "session ended before the file was closed"
                               + ("; kept for a resume" if kept else ""))
            return
        seconds = self._verdict_seconds(handle)
        try:
            published = await run_off_loop(self.executor, self._commit, handle.writer,
                                           seconds is not None)
        except UploadFailedError as exc:
            self._log_transfer("upload", handle, str(exc))
            raise asyncssh.SFTPFailure(str(exc)) from None
        except FileExistsError:
            self._log_transfer("upload", handle, "target appeared meanwhile; not overwritten")
            raise asyncssh.SFTPFileAlreadyExists("file already exists") from None
        except OSError as exc:
            self._log_transfer("upload", handle, f"publish failed: {exc.strerror}")
            raise
        self._log_transfer("upload", handle, None)
        if published is not None and seconds is not None:
            await self._tell_verdict(handle, published, seconds)

    def _verdict_seconds(self, handle: UploadHandle) -> float | None:
        """How long this close waits for the verdict (``scanning.verdictOnClose``), or None;
        asked at each close, so that a reload applies to the next one. Not at all for a
        client's temp name (``NAME.filepart``): it is scanned only once renamed."""
        verdicts = self.context.verdicts
        if verdicts is None or is_partial_upload_name(PurePosixPath(handle.virtual).name):
            return None
        return verdicts.seconds()

    async def _tell_verdict(self, handle: UploadHandle, published: PublishedFile,
                            seconds: float) -> None:
        """Wait for the published file's verdict (server.verdict_wait) and answer an infected
        or unscannable one with SSH_FX_FAILURE, its reason also on the session's stderr
        (OpenSSH's sftp prints only the code's text). The wait holds a descriptor, counted
        in the process's budget: without room there, the close answers OK at once."""
        budget = process_budget()
        if not budget.take_handle():
            await run_off_loop(self.executor, published.close)
            return
        try:
            message = await verdict_at_close(self.executor, published, seconds,
                                             lambda: _client_has_left(self.channel))
        finally:
            budget.release_file()
        if message is None:
            return
        log_event(app_log, "verdict told", user=self.account.username,
                  ip=self.context.ip, path=handle.virtual, message=message)
        self._show_refusal("upload", handle.virtual, message)
        await asyncio.sleep(0)  # the stderr line (written in the next turn) before the reply
        raise asyncssh.SFTPFailure(message)

    def exit(self) -> None:
        """close() already settled every open handle. The session's thread is let go, not
        waited for: it may be stuck on a hung filesystem, and ends when that call returns."""
        self.executor.shutdown()

    def __repr__(self) -> str:
        return f"SFTPSession(user={self.account.username!r})"


def _shown_attrs(info: os.stat_result) -> SFTPAttrs:
    """Attributes as the client sees them: a symlink's size would be the length of its
    target path, a hint at where it points (a host path), so a link has size 0. No owner is
    sent (the UIDGID flag is off): host ids and names are not the partner's business, and
    OpenSSH's sftp then shows the names users-groups-by-id@openssh.com gives (server.compat:
    the account's name and "ssftp")."""
    attrs = SFTPAttrs.from_local(info)
    attrs.uid = attrs.gid = attrs.owner = attrs.group = None
    if stat.S_ISLNK(info.st_mode):
        attrs.size = 0
    return attrs


def _next_names(entries: Iterator[os.DirEntry[str]]) -> list[SFTPName]:
    """The next names of a listing with their attributes; empty at its end.

    Up to ``_LISTING_BATCH`` per call, each call one trip to the session's thread: a trip
    costs some 40 microseconds, dozens of times the stat of a cached entry (about one), so
    one trip per entry would make a listing many times slower.
    """
    names: list[SFTPName] = []
    for entry in entries:
        if is_reserved_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)  # relative to the directory, not a path
        except FileNotFoundError:
            continue  # gone since readdir (claimed by the scanner, removed): not listed
        names.append(SFTPName(os.fsencode(entry.name), attrs=_shown_attrs(info)))
        if len(names) == _LISTING_BATCH:
            break
    return names


def _mode(permissions: int) -> int:
    """The mode a client may set: permission bits, never set-id nor sticky, nor others' write."""
    return stat.S_IMODE(permissions) & 0o775


def _times(attrs: SFTPAttrs) -> tuple[int, int]:
    assert attrs.mtime is not None
    return (attrs.atime if attrs.atime is not None else attrs.mtime, attrs.mtime)


def _only_mode(attrs: SFTPAttrs) -> bool:
    return attrs.permissions is not None and all(
        value is None for value in (attrs.size, attrs.uid, attrs.gid, attrs.atime, attrs.mtime))


def _require_printable_name(target: JailPath) -> None:
    """Refuse a new name with a control character (before it exists, not when listing)."""
    if not _CONTROL_CHARACTERS.isdisjoint(target.name):
        raise Refused("names may not contain control characters (newline, tab, escape, ...)")
