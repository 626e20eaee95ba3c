"""Moving a complete file to another area without ever exposing a partial file.

On one filesystem a rename is atomic. Across filesystems (e.g. staging on a local disk and
clean/ on a network share) the file is copied to a hidden temp name in the target directory,
fsynced, renamed into place, and only then is the source removed: a crash at any point leaves
either the source or the complete target (possibly both, never neither, never a torn file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from ssftp.layout import TEMP_PREFIX
from ssftp.names import numbered


def proc_path(fd: int) -> str:
    """The name of an open descriptor's own object (Linux ``/proc/self/fd``): a call by this
    name acts on exactly what was opened, wherever the path that led there points now."""
    return f"/proc/self/fd/{fd}"


def temp_path_beside(target: Path) -> Path:
    """A hidden temp name in the target's directory: same filesystem, so a rename is atomic."""
    return target.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")


def publish(temp: Path, target: Path, *, replace: bool, durable: bool = True,
            dir_fd: int | None = None) -> None:
    """Give a complete temp file its final name: the one way every writer of ssftp makes a
    file appear. Without ``replace`` an existing file is never clobbered: FileExistsError.
    The temp file is gone afterwards, whatever happened.

    ``durable``: the data is on disk before the name appears, and the name is on disk when
    this returns, so a power cut leaves the old state or the complete new file, never an
    empty file under the final name. Only uploads may opt out (``fsyncUploads: false``).

    ``dir_fd``: ``temp`` and ``target`` are names in the directory open as ``dir_fd``, so the
    rename happens in exactly the directory the caller checked (the server's jail), even if
    its path has been swapped for a symlink out since.

    A hard link is what refuses atomically to replace; on filesystems without hard links
    (some network shares) it falls back to checking, then renaming.
    """
    try:
        if durable:
            _fsync_file(temp, dir_fd)
        if replace:
            os.replace(temp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            _link_or_rename(temp, target, dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    if durable:
        if dir_fd is None:
            fsync_directory(target.parent)
        else:
            os.fsync(dir_fd)


def write_durably(target: Path, data: bytes, *, replace: bool, mode: int = 0o640) -> None:
    """Create ``target`` holding ``data``, through a temp file and :func:`publish`."""
    temp = temp_path_beside(target)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    publish(temp, target, replace=replace)


def _link_or_rename(temp: Path, target: Path, dir_fd: int | None) -> None:
    try:
        os.link(temp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if _lexists(target, dir_fd):
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
        os.rename(temp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(temp, dir_fd=dir_fd)


def _lexists(path: Path, dir_fd: int | None) -> bool:
    try:
        os.lstat(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _fsync_file(path: Path, dir_fd: int | None) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """Make a rename or new name in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: Path, temp: Path) -> None:
    reader = _open_regular_file(source)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            size = os.fstat(reader).st_size
            offset = 0
            while offset < size:
                sent = os.sendfile(fd, reader, offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        finally:
            os.close(fd)
    finally:
        os.close(reader)


def _open_regular_file(source: Path) -> int:
    """Open ``source`` to copy it, refusing all but a regular file: a symlink (ELOOP) would be
    followed, copying what it points at (maybe outside every area), and a FIFO would block
    the copy for ever (O_NONBLOCK: the open itself returns at once). Such a file only moves
    by rename, on one filesystem; across two it stays where it is, and the caller says so."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file: it is never copied", str(source))
    return fd


def move_atomically(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` (replacing it), creating the target's directories."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        fsync_directory(target.parent)
        return
    temp = temp_path_beside(target)
    try:
        _copy(source, temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    publish(temp, target, replace=True)
    source.unlink()


def numbered_name(target: Path, number: int) -> Path:
    """``name.ext`` for 1, ``name (2).ext`` for 2 ...: how a taken name is kept apart (within
    the bytes a name may have, :func:`ssftp.names.numbered`)."""
    return target.with_name(numbered(target.name, number))


def link_without_replacing(source: Path, target: Path) -> Path:
    """Give ``source`` the name ``target``, or ``name (2).ext`` ... if taken; never replaces.

    A hard link fails when the name exists, so two processes can never take the same name.
    ``source`` keeps its own name too; the caller removes it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        candidate = numbered_name(target, number)
        try:
            os.link(source, candidate)
        except FileExistsError:
            number += 1
        else:
            fsync_directory(candidate.parent)
            return candidate
