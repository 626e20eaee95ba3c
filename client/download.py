"""Downloading: fetch a remote directory tree into staging, where it is scanned.

Per file: fetch to a hidden temp name beside the target, check the local size and that the
remote file did not change meanwhile, publish by rename, remember it, and only then delete
the remote copy (when asked). A crash at any point leaves the remote file in place, or a
complete local copy with the remote file remembered (so it is deleted, not fetched, next run).
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import asyncssh

from client.connection import CONNECTION_LOST, reason
from ssftp.config.schema import Downloader
from ssftp.file_stamp import FileStamp, sha256_if_unchanged
from ssftp.layout import DataLayout, is_partial_upload_name
from ssftp.logs import audit_event
from ssftp.moves import temp_path_beside
from ssftp.transfer.local import (
    TransferResult,
    area_path,
    exists_locally,
    local_name_problem,
    publish_download,
)
from ssftp.transfer.state import RemoteStamp, TransferState


async def _walk(sftp: asyncssh.SFTPClient, root: str, sub_path: PurePosixPath,
                skipped: list[TransferResult]) -> AsyncIterator[tuple[str, PurePosixPath,
                                                                       asyncssh.SFTPAttrs]]:
    """Regular files below ``root`` as (remote path, sub path, attributes), depth first.

    Names that cannot be stored locally, symlinks and other odd entries are reported in
    ``skipped``; in-progress uploads (``*.filepart``) are passed over silently.
    """
    directory = posixpath.join(root, sub_path.as_posix()) if sub_path.parts else root
    entries = sorted([entry async for entry in sftp.scandir(directory)],
                     key=lambda entry: str(entry.filename))
    for entry in entries:
        name = str(entry.filename)
        if name in (".", ".."):
            continue
        child = sub_path / name
        problem = local_name_problem(name)
        if problem:
            skipped.append(TransferResult(child.as_posix(), 0, "skipped", problem))
            continue
        kind = entry.attrs.type
        if kind == asyncssh.FILEXFER_TYPE_DIRECTORY:
            async for item in _walk(sftp, root, child, skipped):
                yield item
        elif kind == asyncssh.FILEXFER_TYPE_REGULAR:
            if not is_partial_upload_name(name):
                yield posixpath.join(directory, name), child, entry.attrs
        else:
            what = "a symlink" if kind == asyncssh.FILEXFER_TYPE_SYMLINK else "not a regular file"
            skipped.append(TransferResult(child.as_posix(), 0, "skipped", f"{what}; not fetched"))


async def download_files(entry: Downloader, layout: DataLayout, state: TransferState,
                         sftp: asyncssh.SFTPClient,
                         flow_run_id: str | None = None) -> list[TransferResult]:
    """Fetch every new or changed file below the remote directory into
    ``staging/<localStagingDirectory>``, keeping sub-directories."""
    results: list[TransferResult] = []
    root = entry.remote_directory or "."
    async for remote_path, sub_path, attrs in _walk(sftp, root, PurePosixPath(), results):
        stamp = RemoteStamp(attrs.size or 0, attrs.mtime or 0)
        if state.fetched(entry.name, remote_path) == stamp:
            if entry.delete_remote_file_after_download:
                # Fetched before, but the delete did not happen: finish that, do not refetch.
                results.append(await _delete_remote(sftp, entry, state, remote_path, sub_path,
                                                    stamp, "fetched earlier"))
            continue
        if not entry.override_existing_file and exists_locally(
                layout, entry.local_staging_directory, sub_path):
            results.append(TransferResult(sub_path.as_posix(), 0, "skipped",
                                          "exists locally (overrideExistingFile: false)"))
            continue
        target = area_path(layout.staging, entry.local_staging_directory, sub_path)
        result = await _fetch(sftp, entry, remote_path, target, sub_path, stamp)
        if result.outcome == "downloaded":
            state.record_fetched(entry.name, remote_path, stamp)
            audit_event("download", downloader=entry.name, remote=remote_path,
                        file=target.relative_to(layout.root).as_posix(), size=result.bytes,
                        sha256=result.sha256, flow_run_id=flow_run_id)
            if entry.delete_remote_file_after_download:
                result = await _delete_remote(sftp, entry, state, remote_path, sub_path, stamp,
                                              "", result.sha256)
        results.append(result)
    return results


async def _fetch(sftp: asyncssh.SFTPClient, entry: Downloader, remote_path: str,
                 target: Path, sub_path: PurePosixPath, stamp: RemoteStamp) -> TransferResult:
    name = sub_path.as_posix()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return TransferResult(name, 0, "failed", f"cannot create {target.parent}: {exc}")
    temp = temp_path_beside(target)
    try:
        await sftp.get(remote_path, temp)
        received = FileStamp.of(temp.stat())
        size = received.size
        after = await sftp.stat(remote_path)
        if (size, after.size, after.mtime) != (stamp.size, stamp.size, stamp.mtime):
            return TransferResult(name, size, "failed",
                                  f"changed while downloading ({stamp.size} bytes listed, "
                                  f"{size} received); fetched again next run")
        # Hashed while still under its temp name, where nothing else reads or moves it: once
        # published, the scanner may take it within a second.
        sha256 = await asyncio.to_thread(sha256_if_unchanged, temp, received)
        if not publish_download(temp, target, replace=entry.override_existing_file):
            return TransferResult(name, 0, "skipped",
                                  "exists locally (overrideExistingFile: false)")
        return TransferResult(name, size, "downloaded", sha256=sha256)
    except CONNECTION_LOST:
        raise
    except (asyncssh.SFTPError, OSError) as exc:
        return TransferResult(name, 0, "failed", reason(exc))
    finally:
        temp.unlink(missing_ok=True)


async def _delete_remote(sftp: asyncssh.SFTPClient, entry: Downloader, state: TransferState,
                         remote_path: str, sub_path: PurePosixPath, stamp: RemoteStamp,
                         earlier: str, sha256: str | None = None) -> TransferResult:
    name = sub_path.as_posix()
    try:
        await sftp.remove(remote_path)
    except CONNECTION_LOST:
        raise
    except asyncssh.SFTPError as exc:
        return TransferResult(name, stamp.size, "failed",
                              f"downloaded, but the remote copy could not be deleted "
                              f"({reason(exc)}); tried again next run")
    # A new file of the same name later is a new file, whatever its size and mtime.
    state.forget_fetched(entry.name, remote_path)
    detail = f"{earlier}; remote copy deleted" if earlier else "remote copy deleted"
    return TransferResult(name, 0 if earlier else stamp.size,
                          "skipped" if earlier else "downloaded", detail, sha256)
