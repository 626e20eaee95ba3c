"""What SETSTAT and FSETSTAT may change, and on what.

Ownership never changes: host ids are not the partner's business, and a shared data root is
not theirs to give away. A file's size changes only while the session still uploads it: a
published file may be waiting for its scan, or past it. Mode and times need ``chmod`` and
``chtimes``, except on the account's own upload, in progress (``put -p`` sets them on the open
handle, sshfs by path) or just published (clients that keep mtimes set them by path after the
close, see server.recent_uploads). A refusal refuses the whole request before anything
changes, and is a real SSH_FX_PERMISSION_DENIED, never an OK that did nothing: a client that
keeps mtimes must learn they were lost. The one exception is for compatibility (see
:func:`left_alone`).
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path

from asyncssh import SFTPAttrs

from server.jail import chmod_name
from ssftp.errors import Refused
from ssftp.permissions import Permission, Permissions


class Whose(enum.Enum):
    """Whose file a request would change, as far as the policy cares."""

    OWN_UPLOAD = "the session's upload in progress"
    RECENT_UPLOAD = "the account's upload of the last moments"
    OTHER = "any other file or directory"


def require_allowed(attrs: SFTPAttrs, whose: Whose, permissions: Permissions) -> None:
    """Raise Refused when one of ``attrs`` may not change on that file."""
    if attrs.uid is not None or attrs.gid is not None:
        raise Refused("changing a file's owner is never allowed")
    if attrs.size is not None and whose is not Whose.OWN_UPLOAD:
        raise Refused("changing a file's size in place is not allowed; upload it again")
    if whose is not Whose.OTHER:
        return
    if attrs.permissions is not None:
        permissions.require(Permission.CHMOD, "changing permissions")
    if attrs.atime is not None or attrs.mtime is not None:
        permissions.require(Permission.CHTIMES, "changing times")


def left_alone(attrs: SFTPAttrs, permissions: Permissions, *, directory: bool) -> bool:
    """Whether the request is refused yet answered OK, changing nothing: the mode alone of a
    directory, without ``chmod``. OpenSSH's ``put -r`` sets the mode of every directory it
    uploaded this way and prints an error for each refusal; a directory's mode is ssftp's,
    not the partner's."""
    return (directory and Permission.CHMOD not in permissions and attrs.permissions is not None
            and all(value is None for value in (attrs.size, attrs.uid, attrs.gid, attrs.atime,
                                                attrs.mtime)))


def mode(permissions: int) -> int:
    """The mode a client may set: permission bits, never set-id nor sticky, nor others' write."""
    return stat.S_IMODE(permissions) & 0o775


def apply(target: int | Path, attrs: SFTPAttrs) -> None:
    """Set the mode and times of ``attrs`` on a descriptor or a path (the size is the upload's
    to change; an access time without a modification time is not set)."""
    if attrs.permissions is not None:
        os.chmod(target, mode(attrs.permissions))
    if attrs.mtime is not None:
        os.utime(target, _times(attrs.atime, attrs.mtime))


def apply_at(directory: int, name: str, attrs: SFTPAttrs) -> None:
    """:func:`apply` to ``name`` in ``directory`` (a descriptor), by that name and without
    following a symlink: whatever is renamed away meanwhile is not reached."""
    if attrs.permissions is not None:
        chmod_name(directory, name, mode(attrs.permissions))
    if attrs.mtime is not None:
        os.utime(name, _times(attrs.atime, attrs.mtime), dir_fd=directory,
                 follow_symlinks=False)


def _times(atime: int | None, mtime: int) -> tuple[int, int]:
    return (mtime if atime is None else atime, mtime)
