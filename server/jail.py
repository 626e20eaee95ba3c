"""The jail: every path a client sends is resolved inside the account's root, or refused.

Client paths are virtual: ``/`` is the account root and no host path is ever shown. ``..`` is
resolved lexically against ``/`` (so it stops at the root), and symlinks found on disk are
resolved with ``realpath`` and must still land inside the root. What is opened by that path is
checked again on the descriptor (:meth:`Jail.verify_fd`), as the directories may change on
disk between the check and the open. ssftp's own hidden temp names are not addressable at
all, so a client can neither see nor race an upload in progress.

Nor is anything else done by path after the check: an operation on a name (lstat, mkdir,
rmdir, unlink, readlink, rename, the SETSTAT of a recent upload: :func:`chmod_name`) goes
through its directory's verified descriptor (:meth:`Jail.open_parent`), and one that follows
the final link (stat, statvfs, setstat) through a verified ``O_PATH`` descriptor of what the
path leads to (:meth:`Jail.open_path`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ssftp.errors import Refused
from ssftp.layout import is_reserved_name
from ssftp.moves import proc_path

# fchmodat2(2) (Linux 6.6), the one chmod of a name that does not follow a final symlink; the
# same number on every architecture. Python 3.11's os.chmod(follow_symlinks=False) refuses on
# Linux, and glibc 2.36's fchmodat emulates the flag by opening the name first.
_SYS_FCHMODAT2 = 452
_AT_SYMLINK_NOFOLLOW = 0x100


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def chmod_name(directory: int, name: str, mode: int) -> None:
    """Change the mode of ``name`` in ``directory`` (a descriptor), by that name and without
    following a symlink there (refused: EOPNOTSUPP), in one call: whatever is renamed away
    meanwhile is not changed.

    A kernel or a seccomp profile without fchmodat2 (ENOSYS, EPERM) gets what glibc does: the
    name opened ``O_PATH | O_NOFOLLOW``, refused if a symlink, changed through the descriptor;
    a rename between the open and the change then still reaches the renamed file.
    """
    if _libc().syscall(_SYS_FCHMODAT2, directory, os.fsencode(name), mode,
                       _AT_SYMLINK_NOFOLLOW) == 0:
        return
    code = ctypes.get_errno()
    if code not in (errno.ENOSYS, errno.EPERM):
        raise OSError(code, os.strerror(code), name)
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP), name)
        os.chmod(proc_path(fd), mode)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class JailPath:
    virtual: str  # what the client sees, e.g. "/reports/q1.csv"
    host: Path  # where it is on disk, always inside the jail root

    @property
    def name(self) -> str:
        return posixpath.basename(self.virtual)


class Jail:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._prefix = str(self.root).rstrip("/") + "/"

    def virtual(self, path: bytes) -> str:
        """Normalise a client path to an absolute virtual path; never leaves ``/``."""
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("path is not valid UTF-8") from None
        if "\x00" in text:
            raise Refused("path contains a NUL byte")
        virtual = posixpath.normpath("/" + text.lstrip("/"))
        if any(is_reserved_name(part) for part in virtual.split("/")):
            raise Refused("path uses a name reserved for ssftp (uploads in progress, scans)")
        return virtual

    def contains(self, host: str) -> bool:
        return host == str(self.root) or host.startswith(self._prefix)

    def verify_fd(self, fd: int) -> None:
        """Refuse a descriptor that is not inside the root, whatever its path said.

        :meth:`resolve` checks a path; another writer on shared storage can swap a directory
        on it for a symlink out before the open by name. So what was opened is checked where
        the kernel says it is (Linux ``/proc/self/fd``), not where the path led a moment
        before. The caller closes (and removes) what it opened.
        """
        if not self.contains(os.readlink(proc_path(fd))):
            raise Refused("path leads outside the home directory")

    def open_directory(self, host: Path) -> int:
        """Open a directory (to list, or to create in) and verify the descriptor: what is
        then read or created through it is inside the jail, whatever happens to the path.
        O_NONBLOCK: whatever is there, the open returns at once."""
        fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self.verify_fd(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def open_parent(self, host: Path) -> Iterator[tuple[int, str]]:
        """The verified descriptor of the directory holding ``host`` (a path from
        :meth:`resolve`), and its name in it, to act on that name with ``dir_fd`` (never
        following a final link): a directory on the way swapped for a symlink out since
        cannot redirect the call. The root has no directory in the jail: it is ``"."`` in
        itself.
        """
        directory, name = (host, ".") if host == self.root else (host.parent, host.name)
        fd = self.open_directory(directory)
        try:
            yield fd, name
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def open_path(self, host: Path) -> Iterator[int]:
        """A verified ``O_PATH`` descriptor of what ``host`` leads to (the final link
        followed, as stat does), for calls that read or change the object itself.

        ``O_PATH`` opens anything (a FIFO, a file without read permission) at once without
        reading it. ``fstat`` and ``fstatvfs`` work on it; ``fchmod`` and ``futimens`` do not
        (EBADF), so a change goes through :func:`proc_path`, which is this very object.
        """
        fd = os.open(host, os.O_PATH | os.O_CLOEXEC)
        try:
            self.verify_fd(fd)
            yield fd
        finally:
            os.close(fd)

    def resolve(self, path: bytes, *, follow_final: bool = True) -> JailPath:
        """Map a client path to disk.

        With ``follow_final=False`` the last component is taken as it is (lstat, remove,
        rename act on a link itself), but every directory above it is still resolved.
        """
        virtual = self.virtual(path)
        parts = virtual.split("/")[1:] if virtual != "/" else []
        if follow_final or not parts:
            host = self._realpath(parts)
        else:
            host = os.path.join(self._realpath(parts[:-1]), parts[-1])
        if not self.contains(host):
            raise Refused("path leads outside the home directory")
        return JailPath(virtual, Path(host))

    def _realpath(self, parts: list[str]) -> str:
        """``os.path.realpath`` of the root joined with ``parts``, but starting at the root,
        which is real already: realpath would look at every directory above it again for
        each request (half the cost of opening a file). The first symlink below the root
        hands the whole path to realpath, so links resolve exactly as realpath does."""
        host = str(self.root)
        for index, part in enumerate(parts):
            candidate = os.path.join(host, part)
            try:
                is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
            except OSError:
                is_link = False  # missing so far: the rest is taken as written, as realpath does
            if is_link:
                return os.path.realpath(os.path.join(candidate, *parts[index + 1:]))
            host = candidate
        return host

    def to_virtual(self, host: Path | str) -> str:
        """The client's view of a host path that is known to be inside the jail."""
        host = str(host)
        if not self.contains(host):
            raise Refused("path leads outside the home directory")
        relative = host[len(self._prefix):] if host != str(self.root) else ""
        return "/" + relative
