"""The local side of downloads and uploads: where files land, how they are published, archived.

Downloads are written to a hidden temp name beside their target in staging and renamed only
once complete and size-checked, so the staging watcher never sees a partial file. Uploads are
taken from clean/ and, once delivered, moved to uploadarchive/ under the same sub path. The
remote side (asyncssh) lives in ``client``; everything here is plain file work.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ssftp.file_stamp import FileStamp
from ssftp.layout import DataLayout, is_pending_name, is_reserved_name
from ssftp.moves import (
    link_without_replacing,
    move_atomically,
    publish,
    temp_path_beside,
)

Outcome = Literal["downloaded", "uploaded", "skipped", "failed"]


@dataclass(frozen=True)
class TransferResult:
    """One row of a transfer run's table: which file, how many bytes, what happened, and the
    sha256 of what was moved (hashed from the local copy as it was sent or received)."""

    file: str
    bytes: int
    outcome: Outcome
    detail: str = ""
    sha256: str | None = None


def local_name_problem(name: str) -> str | None:
    """Why a remote name cannot be stored in staging as it is, or None when it can."""
    if name in ("", ".", ".."):
        return f"{name!r} is not a file name"
    if "/" in name or "\0" in name or "\\" in name:
        return "the name contains '/', '\\' or NUL"
    if is_reserved_name(name):
        return "names starting with .ssftp- are reserved for ssftp itself"
    return None


def area_path(area: Path, directory: str, sub_path: PurePosixPath) -> Path:
    """``<area>/<directory>/<sub path>``; ``*`` is the whole area (uploaders only)."""
    base = area if directory == "*" else area / directory
    return base / sub_path


def exists_locally(layout: DataLayout, directory: str, sub_path: PurePosixPath) -> bool:
    """For ``overrideExistingFile: false``: the file is waiting in staging or already clean.

    Staging alone would not do: a downloaded file leaves staging within a second, and the next
    run would fetch it again and replace the clean copy.
    """
    return any(os.path.lexists(area_path(area, directory, sub_path))
               for area in (layout.staging, layout.clean))


def publish_download(temp: Path, target: Path, *, replace: bool) -> bool:
    """Make a complete temp file visible under its name; False when ``target`` exists and
    ``replace`` is off (the temp file is then removed).

    Durably: a power cut must not turn a published file into an empty one, since the remote
    copy may be deleted right after.
    """
    try:
        publish(temp, target, replace=replace)
    except FileExistsError:
        return False
    return True


def files_to_upload(layout: DataLayout, directory: str) -> list[PurePosixPath]:
    """Regular files under ``clean/<directory>``, as paths relative to it, oldest first.

    Symlinks and ssftp's own hidden names are left out; clean/ only ever receives whole
    files by rename, so every other file there is complete.
    """
    root = area_path(layout.clean, directory, PurePosixPath())
    found: list[tuple[int, PurePosixPath]] = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(name for name in dirs if not is_reserved_name(name))
        for name in files:
            if is_pending_name(name):
                continue
            path = Path(current, name)
            with contextlib.suppress(FileNotFoundError):
                info = path.lstat()
                if path.is_file() and not path.is_symlink():
                    found.append((info.st_mtime_ns, PurePosixPath(path.relative_to(root))))
    return [sub_path for _, sub_path in sorted(found)]


def archive_uploaded(layout: DataLayout, clean_path: PurePosixPath,
                     uploaded: FileStamp) -> Path | None:
    """Move the delivered file ``clean/<clean_path>`` to ``uploadarchive/<clean_path>``.

    Returns where it went (``name (2).ext`` when an earlier delivery of that name is archived),
    or None when the file at that path is no longer the one delivered: a newer clean version
    replaced it meanwhile, and that one still has to be uploaded.
    """
    source = layout.clean / clean_path
    target = layout.uploadarchive / clean_path
    with contextlib.suppress(FileNotFoundError):
        if FileStamp.of(source.stat()) != uploaded:
            return None
    target.parent.mkdir(parents=True, exist_ok=True)
    taken = temp_path_beside(target)
    try:
        # Take the file by rename: whatever is at the path now is what gets checked.
        os.rename(source, taken)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # clean/ and uploadarchive/ on different filesystems: copy, then check.
        move_atomically(source, taken)
    else:
        if FileStamp.of(taken.stat()).inode != uploaded.inode:
            # Replaced between the check and the rename: put the newer file back.
            with contextlib.suppress(FileExistsError):
                os.link(taken, source)
            taken.unlink()
            return None
    try:
        return link_without_replacing(taken, target)
    finally:
        taken.unlink()
