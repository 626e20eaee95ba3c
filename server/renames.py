"""The rename a staging account may make without the ``rename`` permission: its own upload of
the last moments, to another name in the same directory.

A client that uploads to a temporary name and renames must work, the file handed to scanning
under its final name only (DESIGN.md). Clients that use a temp name ssftp knows
(``NAME.filepart``, ``.in.NAME``, ``.giosaveXXXXXX``: ssftp.layout) are served by that name:
it is never scanned, and its rename to a final name needs only ``upload``. Others upload to a
name of their own choosing and rename once it is closed (Node's ssh2-sftp-client, Java's
JSch, ``gio move``); without a rule for them the rename was refused, and the complete file was
scanned and handed on under the name the client meant to change.

So an account with ``upload`` may rename the file it published at a name (known by its
identity, server.recent_uploads) while that name still holds it, for ``RECENT_SECONDS`` after
its close, to another name in the same directory: not into another directory (sub-directories
may carry rules of their own; moving needs ``rename``), not to a name that hides it from
scanning (a client temp name; ssftp's own names are refused by the jail), and onto an existing
name only as any upload may replace one (posix-rename and ``overwrite``). The window really
ends when the scanner claims the file: the name is empty, and the rename fails with no such
file (the file is scanned under its first name). The staging watcher gives a client's rename
time before it claims a file (``scanning.renameGraceSeconds``, ssftp.scan.readiness).

The check is made as SETSTAT's is (server.sftp_session): the identity through the name in its
verified directory, and the rename by that same directory descriptor, so a directory swapped
on the way cannot redirect it. A claim between the check and the rename leaves the name empty,
and the rename fails with no such file.
"""

from __future__ import annotations

import os
import stat

from server.jail import JailPath
from server.recent_uploads import Identity
from ssftp.errors import Refused
from ssftp.layout import is_partial_upload_name

NOT_OWN_UPLOAD = ("renaming needs the 'rename' permission: without it, only this account's "
                  "upload of the last minute may be renamed, within its directory")


def require_rename_in_place(source: JailPath, target: JailPath) -> None:
    """The checks by name (no disk) of a rename of an account's own upload."""
    if source.host.parent != target.host.parent:
        raise Refused("an upload may be renamed only within its directory (moving it needs "
                      "the 'rename' permission)")
    if is_partial_upload_name(target.name):
        raise Refused("an upload may not be renamed to a temp name (NAME.filepart, .in.NAME, "
                      "...): it would never be scanned")


def require_own_upload(info: os.stat_result, identity: Identity | None) -> None:
    """Refuse unless ``info`` (an lstat of the source by its name) is the regular file the
    account published there (``identity``, None when it published none there lately)."""
    if (identity is None or not stat.S_ISREG(info.st_mode)
            or (info.st_dev, info.st_ino) != identity):
        raise Refused(NOT_OWN_UPLOAD)
