"""One SFTP session: each client request passes the jail and the permission check, then acts.

The base class's path mapping is disabled (it fails closed), so every operation the server
supports is one of the methods below and no request can reach the disk unchecked. A refusal is
logged and answered with SSH_FX_PERMISSION_DENIED; filesystem errors keep their own codes, and
an upload past the account's quota (server.quota) fails as one past a full disk does.
Whatever touches the disk runs in the session's own thread, never on the event loop that every
session shares (server.off_loop): a hung filesystem holds only the sessions that use it.

This is the protocol's side only: what a handle holds and how many a session may open is
server.handles', what an upload's close does with its bytes server.upload's, and what SETSTAT
may change server.attributes'.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import posixpath
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import asyncssh
from asyncssh import SFTPAttrs, SFTPName
from asyncssh.sftp import MAX_SFTP_READ_LEN

from server import attributes, renames
from server.attributes import Whose
from server.bandwidth import UNLIMITED, Buckets
from server.compat import stderr_notices
from server.descriptors import process_budget
from server.handles import HEAD_BYTES, DownloadHandle, Handles, UploadHandle
from server.in_flight import ChannelBytes
from server.jail import Jail, JailPath
from server.log_summary import MAX_KEYS, REFUSAL_LOG_SECONDS, LogSummary
from server.off_loop import SessionThread, off_loop, run_off_loop
from server.quota import QuotaHold, account_tallies, statvfs_within
from server.recent_uploads import recent_uploads
from server.shown_attrs import longname, shown_attrs
from server.upload import Upload, UploadContext
from server.upload_writer import UploadWriter, partial_path, stat_partial
from server.verdict_wait import VerdictWatch
from ssftp.config.accounts import Account
from ssftp.config.schema import LimitsSettings, Quota
from ssftp.errors import Refused, UploadFailedError
from ssftp.layout import final_upload_name, is_partial_upload_name, is_reserved_name
from ssftp.logs import APP, audit_event, log_event
from ssftp.moves import proc_path
from ssftp.permissions import Permission

app_log = logging.getLogger(APP)

DIR_MODE = 0o750

# C0 controls and DEL: a name holding one (a newline above all) forges lines in every log and
# listing that prints it, and breaks the scripts that read them.
_CONTROL_CHARACTERS = frozenset(chr(code) for code in (*range(0x20), 0x7F))

# Entries per trip off the loop (see _next_names): as many as asyncssh puts in a READDIR reply.
_LISTING_BATCH = 128
# The largest READ served: what asyncssh tells clients it serves (limits@openssh.com), so those
# that ask are never cut short; asyncssh's clients read 4 MiB blocks, OpenSSH's 255 KiB.
MAX_READ_BYTES = MAX_SFTP_READ_LEN


def _no_quota() -> Quota | None:
    return None


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
    # The account's quota as the config has it now (server.quota), asked at each OPEN for
    # writing and each statvfs, so that a reload applies to the next one.
    quota: Callable[[], Quota | None] = _no_quota
    # The account's bandwidth buckets (server.bandwidth), asked at each OPEN as limits are.
    bandwidth: Callable[[], Buckets] = lambda: UNLIMITED


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
        # Every call that touches the disk runs there (server.off_loop). The handle counts,
        # the listings and the budget shared by all sessions stay with the event loop.
        self.executor = SessionThread()
        budget = process_budget()
        self._handles = Handles(self.account.username, context.ip, context.limits, budget)
        self._upload_context = UploadContext(
            self.executor, self.account.username,
            client_left=functools.partial(_client_has_left, chan), budget=budget,
            recent=recent_uploads(), durable=context.durable_uploads, verdicts=context.verdicts)
        self._show_refusal = stderr_notices(chan)
        self._take_bandwidth()

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

    def _audit(self, event: str, virtual: str, **fields: int | str) -> None:
        """An audit record of what the account did to a file (``fetch``, ``delete``,
        ``rename``): the file's history (``ssftp status``) shows who took, removed or renamed
        it. Named as the scan's records name it (``clean/partner1/report.csv``); it gates
        nothing, so a record that cannot be written is a line on stderr
        (ssftp.logs.audit_event). In the session's thread: the audit log is a file."""
        audit_event(event, logging.INFO, file=self._data_name(virtual),
                    user=self.account.username, ip=self.context.ip, **fields)

    def _data_name(self, virtual: str) -> str:
        return self.account.data_name_of(virtual) or virtual

    def _require_allowed_name(self, target: JailPath, *, directory: bool = False) -> None:
        """Refuse a name the account's ``filePatterns`` refuse (ssftp.file_patterns): pure
        CPU, and nothing at all for an account without patterns. Where the path really is
        (its directories resolved, as the jail did), not as the client spelled it; a client
        temp name as the name it stands for (``x.exe.filepart`` is ``x.exe``: refused before
        a byte is written), and not at all when it does not carry one (``.giosaveXXXXXX``:
        its rename to the final name is checked)."""
        rules = self.account.file_patterns
        if rules is None:
            return
        virtual = self.jail.to_virtual(target.host)
        name = final_upload_name(posixpath.basename(virtual)) if virtual != "/" else None
        if name is None:
            return
        refusal = rules.refusal(posixpath.dirname(virtual), name, directory=directory)
        if refusal is not None:
            raise Refused(refusal)

    def _finish_download(self, fd: int, virtual: str, read: int) -> None:
        """Close a download's descriptor and, when the file was read (not only opened: a
        STAT-like open, a resume's probe), write its ``fetch`` record; one trip for both."""
        with contextlib.suppress(OSError):
            os.close(fd)
        if read:
            self._audit("fetch", virtual, bytes=read)

    def log_refusal(self, key: tuple[str, ...], event: str, **fields: str | int) -> None:
        """Log a refusal in the connection's summary, from the session's thread or the loop
        (the line is written on the loop, where the summary's timers are)."""
        line = functools.partial(self.context.refusals.log, key, event, logging.WARNING,
                                 user=self.account.username, ip=self.context.ip, **fields)
        # The loop is closed if the server stopped while this session's call hung.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(line)

    def _refuse_quota(self, operation: str, virtual: str, reason: str) -> NoReturn:
        """Answer SSH_FX_FAILURE with the reason (``quota exceeded: 1.0 GiB of 1.0 GiB``), as a
        full disk is (the account is out of room, no permission is missing), also on the
        session's stderr, and log it in summary as other refusals are."""
        self.log_refusal(("quota", operation), "refused", op=operation, path=virtual,
                         reason=reason)
        self._show_refusal(operation, virtual, reason)
        raise asyncssh.SFTPFailure(reason)

    def format_user(self, uid: int | None) -> str:
        return self.account.username  # never reveal host account names

    def format_group(self, gid: int | None) -> str:
        return "ssftp"

    def format_longname(self, name: SFTPName) -> None:
        assert isinstance(name.filename, bytes)
        name.longname = longname(name.attrs, self.format_user(None), self.format_group(None),
                                 name.filename)

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
            return shown_attrs(self._stat_or_upload(target, self._stat_following))

    @off_loop
    def lstat(self, path: bytes) -> SFTPAttrs:
        with self._checked("lstat", path), self._voiding_own_upload("lstat", path):
            self.permissions.require(Permission.LIST, "stat")
            target = self.jail.resolve(path, follow_final=False)
            return shown_attrs(self._stat_or_upload(target, self._stat_not_following))

    def _stat_or_upload(self, target: JailPath,
                        stat_on_disk: Callable[[Path], os.stat_result]) -> os.stat_result:
        """What a client sees at a path: the upload this session is writing there (sshfs
        LSTATs the file it has just created before it writes, and gives up when it is not
        there), else what is on disk, else the account's interrupted upload of that path
        (``sftp reput``, ``lftp put -c`` and ``curl -C -`` ask its size to resume from). An
        upload in progress is never listed, nor seen by another account or the scanner."""
        own = self._handles.upload_at(target.virtual)
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
                own = self._handles.upload_at(self.jail.virtual(path))
                if own is not None:
                    own.upload.writer.void(f"{operation} of the file was refused or failed")
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
        the session) drops it, and tells the server nothing then: the listing is counted
        while it exists (server.handles)."""
        listing = self._listing(path)  # not started: nothing is opened before the check
        self._handles.add_listing(path, listing)
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
            return fd, shown_attrs(os.fstat(fd)), os.scandir(fd)
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
                return self._within_quota(os.fstatvfs(fd))

    def _within_quota(self, host: os.statvfs_result) -> os.statvfs_result:
        """What ``df`` shows: the account's quota and usage when it has one (recounted when
        stale, server.quota), else the host's filesystem."""
        quota = self.context.quota()
        if quota is None:
            return host
        tally = account_tallies().of(self.account.root, self.account.username, quota)
        if tally.stale():
            tally.recount()
        return statvfs_within(host, quota, tally.usage())

    # -- directories -------------------------------------------------------------------

    @off_loop
    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        with self._checked("mkdir", path):
            self.permissions.require(Permission.CREATE_DIRS, "creating a directory")
            target = self.jail.resolve(path, follow_final=False)
            _require_printable_name(target)
            self._require_allowed_name(target, directory=True)
            with self.jail.open_parent(target.host) as (directory, name):
                os.mkdir(name, DIR_MODE, dir_fd=directory)
                info = os.lstat(name, dir_fd=directory)
            # Its times, set once its files are in (sftp put -Rp, Midnight Commander), are
            # the account's to set, as those of its uploads (server.recent_uploads).
            self._upload_context.recent.remember(self.account.username, target.host,
                                                 (info.st_dev, info.st_ino))

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
                info = os.lstat(name, dir_fd=directory)
                if stat.S_ISDIR(info.st_mode):
                    raise asyncssh.SFTPFileIsADirectory("is a directory")
                os.unlink(name, dir_fd=directory)
            if not is_partial_upload_name(target.name):  # a client's own temp name: no file
                self._audit("delete", target.virtual, size=info.st_size)

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
            elif (Permission.RENAME not in self.permissions
                  and Permission.UPLOAD in self.permissions):
                self._rename_own_upload(source, target, replace=replace)
                return
            else:
                self.permissions.require(Permission.RENAME, "renaming")
            with self.jail.open_parent(source.host) as (source_dir, source_name), \
                    self.jail.open_parent(target.host) as (target_dir, target_name):
                info = os.lstat(source_name, dir_fd=source_dir)
                self._require_allowed_names(source, target, directory=stat.S_ISDIR(info.st_mode))
                self._move(source_dir, source_name, target_dir, target_name, replace=replace)
            if not finishing_upload and stat.S_ISREG(info.st_mode):
                self._audit_rename(source, target, info)

    def _rename_own_upload(self, source: JailPath, target: JailPath, *, replace: bool) -> None:
        """Rename the account's own recent upload within its directory (server.renames)."""
        renames.require_rename_in_place(source, target)
        self._require_allowed_names(source, target, directory=False)
        recent = self._upload_context.recent
        identity = recent.identity(self.account.username, source.host)
        if identity is None:
            raise Refused(renames.NOT_OWN_UPLOAD)
        with self.jail.open_parent(source.host) as (directory, name):
            info = os.lstat(name, dir_fd=directory)  # no such file: the scanner took it
            renames.require_own_upload(info, identity)
            self._move(directory, name, directory, target.name, replace=replace)
        # Its times, set by the new name right after, are still the account's to set.
        recent.remember(self.account.username, target.host, identity)
        self._audit_rename(source, target, info)

    def _require_allowed_names(self, source: JailPath, target: JailPath, *,
                               directory: bool) -> None:
        """A rename's two names, as SFTPGo checks them: not to a refused name (it would reach
        staging, or be downloaded, under it), nor from one (a consumer would rename a file it
        may not download to one it may)."""
        self._require_allowed_name(source, directory=directory)
        self._require_allowed_name(target, directory=directory)

    def _move(self, source_dir: int, source_name: str, target_dir: int, target_name: str, *,
              replace: bool) -> None:
        """Rename by directory descriptors; an existing target is replaced only when asked
        (posix-rename: SSH_FXP_RENAME never replaces) and allowed (``overwrite``)."""
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

    def _audit_rename(self, source: JailPath, target: JailPath, info: os.stat_result) -> None:
        """A ``rename`` record names the file by its new name (as its scan will) and its old
        (``source``): ``ssftp status`` by the new name shows the rename beside the scan, by the
        old the rename, which says where the file went (ssftp.audit_history)."""
        self._audit("rename", target.virtual, source=self._data_name(source.virtual),
                    size=info.st_size)

    @off_loop
    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._rename(oldpath, newpath, replace=False)

    @off_loop
    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._rename(oldpath, newpath, replace=True)

    # -- files: attributes -------------------------------------------------------------

    @off_loop
    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        with self._checked("setstat", path):
            target = self.jail.resolve(path)
            writing = self._handles.upload_at(target.virtual)
            if writing is not None:  # sshfs sets times by path on the file it is writing
                self._set_upload_attrs(writing, attrs)
            elif not self._set_recent_upload_attrs(target.host, attrs):
                self._setstat_on_disk(target.host, attrs)

    def _set_recent_upload_attrs(self, host: Path, attrs: SFTPAttrs) -> bool:
        """Set the attributes of this account's upload of the last moments at ``host``
        (server.recent_uploads) if the name still holds it; False when another file is there
        (the caller treats it as any file).

        When the name is empty, the scanner has claimed the upload (or the client moved it):
        the SETSTAT is answered OK and changes nothing, as SFTPGo's ``setstat_mode: 1`` does
        for every file. The client sent it as a follow-up of its upload (asyncssh
        ``put(preserve=True)``, WinSCP, rclone, lftp, sshfs ``cp -p``: a round trip after the
        close, longer than the scanner may wait for a file published whole), and failing it
        fails the whole transfer for the client, which then uploads it again; the times are
        the file's own business, not its content's.

        By the name in its verified directory, without following a link, not through a
        descriptor of the file: a change that reached the claimed file during its scan would
        make the scanner retry it (a client repeating SETSTAT, for ever). A claim between the
        check and the change leaves the name empty, and the change fails with no such file.
        """
        identity = self._upload_context.recent.identity(self.account.username, host)
        if identity is None:
            return False
        with self.jail.open_parent(host) as (directory, name):
            attributes.require_allowed(attrs, Whose.RECENT_UPLOAD, self.permissions)
            try:
                info = os.lstat(name, dir_fd=directory)
            except FileNotFoundError:
                return True  # taken by the scanner: nothing to change
            if (info.st_dev, info.st_ino) != identity:
                return False
            attributes.apply_at(directory, name, attrs)
        return True

    def _setstat_on_disk(self, host: Path, attrs: SFTPAttrs) -> None:
        with self.jail.open_path(host) as fd:
            if attributes.left_alone(attrs, self.permissions,
                                     directory=stat.S_ISDIR(os.fstat(fd).st_mode)):
                return
            attributes.require_allowed(attrs, Whose.OTHER, self.permissions)
            # By the descriptor's /proc name: fchmod and futimens refuse an O_PATH one.
            attributes.apply(Path(proc_path(fd)), attrs)

    @off_loop
    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        handle = self._handle(file_obj)
        with self._checked("setstat", handle.virtual.encode()):
            if isinstance(handle, UploadHandle):
                self._set_upload_attrs(handle, attrs)
            else:
                attributes.require_allowed(attrs, Whose.OTHER, self.permissions)
                attributes.apply(handle.fd, attrs)

    def _set_upload_attrs(self, handle: UploadHandle, attrs: SFTPAttrs) -> None:
        attributes.require_allowed(attrs, Whose.OWN_UPLOAD, self.permissions)
        if attrs.size is not None:
            self._reserve_truncation(handle, attrs.size)
            handle.upload.writer.truncate(attrs.size)
        attributes.apply(handle.fileno(), attrs)

    def _reserve_truncation(self, handle: UploadHandle, size: int) -> None:
        """A size set on an upload counts as a WRITE up to it would (in the session's
        thread, where the SETSTAT is)."""
        hold = handle.upload.quota
        if hold is None:
            return
        if hold.grow(size) is not None:
            hold.tally.recount()
            refusal = hold.grow(size)
            if refusal is not None:
                handle.upload.writer.void(refusal)
                self._refuse_quota("setstat", handle.virtual, refusal)
        hold.truncated(size)

    @off_loop
    def fstat(self, file_obj: object) -> SFTPAttrs:
        return shown_attrs(os.fstat(self._handle(file_obj).fileno()))

    @off_loop
    def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        return self._within_quota(os.fstatvfs(self._handle(file_obj).fileno()))

    # -- files: open, read, write, close -----------------------------------------------

    @staticmethod
    def _handle(file_obj: object) -> DownloadHandle | UploadHandle:
        if not isinstance(file_obj, DownloadHandle | UploadHandle):
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        return file_obj

    def _take_bandwidth(self) -> None:
        """The buckets this session's READs and WRITEs wait in until its next OPEN; None
        (one check per request) where a direction is unlimited."""
        self._uploads, self._downloads = self.context.bandwidth()
        self._max_read = MAX_READ_BYTES if self._downloads is None else self._downloads.max_read

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        self._take_bandwidth()
        return await self._handles.open(path, functools.partial(self._opened, path, pflags,
                                                                attrs))

    @off_loop
    def _opened(self, path: bytes, pflags: int, attrs: SFTPAttrs,
                ) -> DownloadHandle | UploadHandle:
        with self._checked("open", path):
            return (self._open_upload(path, pflags, attrs) if pflags & asyncssh.FXF_WRITE
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
        """The handle, with the file's head read in the same trip (server.handles.ReadAhead)."""
        self.permissions.require(Permission.DOWNLOAD, "downloading")
        target = self.jail.resolve(path)
        self._require_allowed_name(target)
        fd = self._open_regular(target.host, os.O_RDONLY)
        try:
            head = os.pread(fd, HEAD_BYTES, 0)
        except BaseException:
            os.close(fd)
            raise
        return DownloadHandle(target.virtual, fd=fd, head=head)

    def _open_upload(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> UploadHandle:
        self.permissions.require(Permission.UPLOAD, "uploading")
        if pflags & asyncssh.FXF_READ:
            self.permissions.require(Permission.DOWNLOAD, "opening for reading")
        target = self.jail.resolve(path)
        _require_printable_name(target)
        self._require_allowed_name(target)
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
        quota = self.context.quota()
        if quota is not None:
            self._admit(quota, target.virtual, attrs, resume=resume)
        else:
            account_tallies().forget(self.account.root)  # a reload took it away
        upload = Upload.begin(
            self._upload_context, self.jail, target, partial,
            replace=exists or Permission.OVERWRITE in self.permissions,
            append=bool(pflags & asyncssh.FXF_APPEND), resume=resume,
            existing=(functools.partial(self._open_regular, target.host, os.O_RDONLY)
                      if exists and not pflags & asyncssh.FXF_TRUNC else None))
        if quota is not None:
            self._hold_quota(upload, quota, resumed=upload.writer.resumed_at is not None)
        return UploadHandle(target.virtual, upload, readable=bool(pflags & asyncssh.FXF_READ))

    def _admit(self, quota: Quota, virtual: str, attrs: SFTPAttrs, *, resume: bool) -> None:
        """Refuse at the OPEN an upload that would pass the quota: one file more (a resume
        continues its file), or the size its attributes announce."""
        tally = account_tallies().of(self.account.root, self.account.username, quota)
        refusal = tally.admit(quota, attrs.size or 0, 0 if resume else 1)
        if refusal is not None:
            self._refuse_quota("open", virtual, refusal)

    def _hold_quota(self, upload: Upload, quota: Quota, *, resumed: bool) -> None:
        """Count the upload in its account's tally from now to its close: at the size it
        starts with (a resume's, or the file it continues without truncate), which is
        refused, the upload discarded, when that already passes the quota."""
        writer = upload.writer
        info = os.fstat(writer.fd)
        tally = account_tallies().of(self.account.root, self.account.username, quota)
        hold = tally.hold(quota, info.st_ino, info.st_size if resumed else 0, resumed=resumed)
        refusal = hold.grow(info.st_size)
        if refusal is not None:
            writer.abort()
            hold.settle(False)
            self._refuse_quota("open", upload.virtual, refusal)
        upload.quota = hold

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """A READ, of at most :data:`MAX_READ_BYTES` (a shorter reply is legal; clients ask
        again for the rest), once its connection has room for the reply (server.in_flight):
        a READ of 2 GiB no longer reads the whole file into one reply. A limited account's
        reply waits its turn (server.bandwidth), charged what it holds (not what was asked:
        a READ at the end of a file is short, or empty)."""
        handle = self._handle(file_obj)
        size = min(size, self._max_read)
        await self._flow.reserve(size)
        if isinstance(handle, UploadHandle):
            data = await self._read_upload(handle, offset, size)
        elif (kept := self._handles.ahead.take(handle, offset, size)) is not None:
            data = kept
        else:
            data = await self._read_download(handle, offset, size)
        self._flow.shrink(len(data))
        handle.bytes += len(data)
        if self._downloads is not None:
            await self._downloads.take(len(data))
        return data

    @off_loop
    def _read_upload(self, handle: UploadHandle, offset: int, size: int) -> bytes:
        if not handle.readable:
            with self._checked("read", handle.virtual.encode()):
                raise Refused("file is not open for reading")
        return handle.upload.writer.read(offset, size)

    async def _read_download(self, handle: DownloadHandle, offset: int, size: int) -> bytes:
        """Read a download, and the client's next requests with it when it reads in order
        (server.handles.ReadAhead)."""
        ahead = self._handles.ahead
        asked = ahead.length(handle, offset, size)
        block = await run_off_loop(self.executor, os.pread, handle.fd, asked, offset)
        return ahead.keep(handle, offset, size, block, asked)

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        """A WRITE is answered without waiting for the disk: the session's thread writes it
        after the requests before it and before those after (SessionThread.start), which
        saves a small file a third of its trips. A write that fails voids the upload (its
        writer remembers why): the client is told at its next WRITE, at an FSYNC and at the
        CLOSE, which publishes nothing.

        The writes go to the thread together, once server.off_loop.BEHIND_LIMIT bytes of them
        wait (or with the session's next call): one trip per MiB of a big upload, not one
        per WRITE. The thread gathers them into one system call (UploadWriter.write_behind):
        with one per WRITE, it and the loop took turns at the interpreter after every write
        (a 256 MiB upload at 153 MB/s, against 349 with each write waited for).

        Not a resumed upload's write: it is refused when it does not continue the upload,
        and that write's answer must say so. A limited account's write waits its turn first
        (server.bandwidth)."""
        handle = self._handle(file_obj)
        if not isinstance(handle, UploadHandle):
            raise asyncssh.SFTPPermissionDenied("file is not open for writing")
        if self._uploads is not None:
            await self._uploads.take(len(data))
        writer = handle.upload.writer
        if handle.upload.quota is not None:
            await self._reserve(handle, handle.upload.quota, offset, len(data))
        if writer.resumed_at is None:
            _require_not_void(writer)
            await self.executor.start(functools.partial(writer.write_behind, offset, data),
                                      len(data))  # waits only when far behind (a slow disk)
        else:
            await run_off_loop(self.executor, self._write_waited, handle, offset, data)
        handle.bytes += len(data)
        return len(data)

    async def _reserve(self, handle: UploadHandle, hold: QuotaHold, offset: int,
                       length: int) -> None:
        """Count a WRITE's bytes in the account's quota as it arrives, or refuse it and void
        the upload (server.quota: the refusal is decided on a recount made for it). Recounts
        run in the session's thread, after the writes before them."""
        writer = handle.upload.writer
        if writer.failure is not None and not writer.resumable_failure:
            _require_not_void(writer)  # resumed too: nothing more of it counts or is kept
        end = (hold.size if writer.append else offset) + length
        if hold.tally.stale():
            await run_off_loop(self.executor, hold.tally.recount)
        if hold.grow(end) is None:
            return
        await run_off_loop(self.executor, hold.tally.recount)
        refusal = hold.grow(end)
        if refusal is not None:
            writer.void(refusal)
            self._refuse_quota("write", handle.virtual, refusal)

    def _write_waited(self, handle: UploadHandle, offset: int, data: bytes) -> None:
        writer = handle.upload.writer
        if writer.resumed_at is None:  # a refused continuation may be followed by a good one
            _require_not_void(writer)
        with self._checked("write", handle.virtual.encode()):
            writer.write(offset, data)

    @off_loop
    def fsync(self, file_obj: object) -> None:
        handle = self._handle(file_obj)
        if isinstance(handle, UploadHandle):
            _require_not_void(handle.upload.writer)  # here, after the writes before it
            handle.upload.writer.fsync()
        else:
            os.fsync(handle.fd)

    async def close(self, file_obj: object) -> None:
        handle = self._handle(file_obj)
        self._handles.close(handle)  # asyncssh has dropped the handle, whatever happens below
        if isinstance(handle, DownloadHandle):
            # In the session's thread (FUSE flushes on close), not waited for: the close of a
            # file read has nothing to tell the client; nor the audit record of the download.
            await self.executor.start(functools.partial(self._finish_download, handle.fd,
                                                        handle.virtual, handle.bytes))
            self._handles.log_transfer(handle, None)
            return
        # asyncssh also calls close() for handles still open when the session ends: the
        # upload then sees that the client has left.
        try:
            message = await handle.upload.close(
                functools.partial(self._handles.log_transfer, handle))
        except UploadFailedError as exc:
            raise asyncssh.SFTPFailure(str(exc)) from None
        except FileExistsError:
            raise asyncssh.SFTPFileAlreadyExists("file already exists") from None
        if message is not None:
            await self._tell_verdict(handle, message)

    async def _tell_verdict(self, handle: UploadHandle, message: str) -> None:
        """Answer an infected or unscannable upload with SSH_FX_FAILURE, its reason also on
        the session's stderr (OpenSSH's sftp prints only the code's text)."""
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
        names.append(SFTPName(os.fsencode(entry.name), attrs=shown_attrs(info)))
        if len(names) == _LISTING_BATCH:
            break
    return names


def _require_not_void(writer: UploadWriter) -> None:
    """Tell the client that an earlier request about this upload failed."""
    if writer.failure is not None:
        raise asyncssh.SFTPFailure(f"upload will not be published: {writer.failure}")


def _require_printable_name(target: JailPath) -> None:
    """Refuse a new name with a control character (before it exists, not when listing)."""
    if not _CONTROL_CHARACTERS.isdisjoint(target.name):
        raise Refused("names may not contain control characters (newline, tab, escape, ...)")
