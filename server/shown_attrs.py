"""What a client is shown of a file: its attributes (STAT, LSTAT, FSTAT, each name a READDIR
lists) and, for SFTP v3 clients, the ``ls -l`` line of each listed name.

- **No owner, and a link's size 0.** No owner is sent (the UIDGID flag is off): host ids and
  names are not the partner's business, and OpenSSH's sftp then shows the names
  users-groups-by-id@openssh.com gives (server.compat: the account's name and "ssftp"). A
  symlink's size would be the length of its target path, a hint at where it points (a host
  path).
- **Built here, not by asyncssh's** ``SFTPAttrs.from_local``, which looks up the owner's and
  the group's names (``getpwuid``, ``getgrgid``: /etc/passwd and /etc/group read again each
  time) for every file, for names that are then thrown away.
- **The ``ls -l`` line** is asyncssh's ``format_longname``, character for character, with the
  date's text kept per second of mtime: asyncssh made three ``strftime`` per name, and the
  names of one directory mostly share a few mtimes.
"""

from __future__ import annotations

import functools
import os
import stat
import time

from asyncssh import SFTPAttrs
from asyncssh.constants import (
    FILEXFER_TYPE_BLOCK_DEVICE,
    FILEXFER_TYPE_CHAR_DEVICE,
    FILEXFER_TYPE_DIRECTORY,
    FILEXFER_TYPE_FIFO,
    FILEXFER_TYPE_REGULAR,
    FILEXFER_TYPE_SOCKET,
    FILEXFER_TYPE_SPECIAL,
    FILEXFER_TYPE_SYMLINK,
    FILEXFER_TYPE_UNKNOWN,
)

_FILE_TYPES = {
    stat.S_IFREG: FILEXFER_TYPE_REGULAR, stat.S_IFDIR: FILEXFER_TYPE_DIRECTORY,
    stat.S_IFLNK: FILEXFER_TYPE_SYMLINK, stat.S_IFSOCK: FILEXFER_TYPE_SOCKET,
    stat.S_IFCHR: FILEXFER_TYPE_CHAR_DEVICE, stat.S_IFBLK: FILEXFER_TYPE_BLOCK_DEVICE,
    stat.S_IFIFO: FILEXFER_TYPE_FIFO,
}
_NS = 1_000_000_000
_HALF_A_YEAR = 365 * 24 * 60 * 60 / 2


def shown_attrs(info: os.stat_result) -> SFTPAttrs:
    """The attributes of the file ``info`` describes, as the client sees them."""
    mode = info.st_mode
    kind = stat.S_IFMT(mode)
    atime, atime_ns = divmod(info.st_atime_ns, _NS)
    mtime, mtime_ns = divmod(info.st_mtime_ns, _NS)
    ctime, ctime_ns = divmod(info.st_ctime_ns, _NS)
    return SFTPAttrs(
        type=_FILE_TYPES.get(kind, FILEXFER_TYPE_SPECIAL if kind else FILEXFER_TYPE_UNKNOWN),
        size=0 if kind == stat.S_IFLNK else info.st_size, permissions=mode,
        atime=atime, atime_ns=atime_ns, crtime=mtime, crtime_ns=mtime_ns,
        mtime=mtime, mtime_ns=mtime_ns, ctime=ctime, ctime_ns=ctime_ns, nlink=info.st_nlink)


def longname(attrs: SFTPAttrs, user: str, group: str, filename: bytes) -> bytes:
    """The ``ls -l`` line of a listed name (SFTP v3's longname), as asyncssh writes it."""
    mode = stat.filemode(attrs.permissions) if attrs.permissions is not None else ""
    nlink = str(attrs.nlink) if attrs.nlink else ""
    size = str(attrs.size) if attrs.size is not None else ""
    mtime, now = attrs.mtime, time.time()
    modtime = "" if mtime is None else _modtime(mtime, now - _HALF_A_YEAR < mtime <= now)
    detail = f"{mode:10s} {nlink:>4s} {user:8s} {group:8s} {size:>8s} {modtime:12s} "
    return detail.encode() + filename


@functools.lru_cache(maxsize=4096)
def _modtime(mtime: int, recent: bool) -> str:
    """``Dec  7 16:35`` for the last half year, ``Dec  7  2025`` before (or in the future)."""
    local = time.localtime(mtime)
    try:
        day = time.strftime("%b %e", local)
    except ValueError:  # a C library without %e
        day = time.strftime("%b %d", local)
    return day + time.strftime(" %H:%M" if recent else "  %Y", local)
