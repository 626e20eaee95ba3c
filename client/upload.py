"""Uploading: push clean files to a remote server, then archive them.

Per file, with a journal entry in ``system/transfers.sqlite`` from start to end:
send to ``<name>.<token>.filepart`` beside the target (a name ssftp and WinSCP-style
consumers treat as in progress), check the remote size, mark the entry *publishing*, rename to
the final name, move the local file to ``uploadarchive/``, drop the entry. After a crash the
next run reads the journal: a *publishing* entry whose temp file is gone was delivered (only
this uploader knew that name) and is archived without sending it again; anything earlier is
sent again from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
from dataclasses import replace
from pathlib import PurePosixPath

import asyncssh

from client.connection import CONNECTION_LOST, reason
from ssftp.config.schema import Uploader
from ssftp.file_stamp import FileStamp, sha256_if_unchanged
from ssftp.layout import DataLayout
from ssftp.logs import audit_event
from ssftp.transfer.local import (
    Outcome,
    TransferResult,
    archive_uploaded,
    area_path,
    files_to_upload,
)
from ssftp.transfer.state import Delivery, Stage, TransferState

ALREADY_THERE = "exists on the remote server (overrideRemoteExistingFile: false)"


class _AlreadyThere(Exception):
    """The final remote name exists and the uploader may not replace it."""


def remote_paths(entry: Uploader, sub_path: PurePosixPath) -> tuple[str, str]:
    """(temp name, final name) on the remote server for ``clean/<dir>/<sub_path>``."""
    final = posixpath.join(entry.remote_directory or "", sub_path.as_posix())
    temp = posixpath.join(posixpath.dirname(final),
                          f"{sub_path.name}.{secrets.token_hex(4)}.filepart")
    return temp, final


def _clean_path(entry: Uploader, sub_path: PurePosixPath) -> PurePosixPath:
    directory = entry.local_directory_to_upload
    return sub_path if directory == "*" else PurePosixPath(directory) / sub_path


async def upload_files(entry: Uploader, layout: DataLayout, state: TransferState,
                       sftp: asyncssh.SFTPClient,
                       flow_run_id: str | None = None) -> list[TransferResult]:
    """Finish deliveries a crash interrupted, then send every file in
    ``clean/<localDirectoryToUpload>``, keeping sub-directories."""
    results: list[TransferResult] = []
    for delivery in state.deliveries(entry.name):
        resumed = await _resume(sftp, entry, layout, state, delivery, flow_run_id)
        if resumed is not None:
            results.append(resumed)
    # A file whose interrupted delivery was just finished or refused has its row already.
    settled = {result.file for result in results}
    for sub_path in files_to_upload(layout, entry.local_directory_to_upload):
        if _clean_path(entry, sub_path).as_posix() not in settled:
            results.append(await _upload(sftp, entry, layout, state, sub_path, flow_run_id))
    return results


async def _upload(sftp: asyncssh.SFTPClient, entry: Uploader, layout: DataLayout,
                  state: TransferState, sub_path: PurePosixPath,
                  flow_run_id: str | None) -> TransferResult:
    local = area_path(layout.clean, entry.local_directory_to_upload, sub_path)
    clean_path = _clean_path(entry, sub_path)
    try:
        stamp = FileStamp.of(local.stat())
    except FileNotFoundError:
        return TransferResult(clean_path.as_posix(), 0, "skipped",
                              "gone from clean/ before it was sent")
    temp, final = remote_paths(entry, sub_path)
    delivery = Delivery(entry.name, clean_path, stamp, temp, final, Stage.SENDING)
    try:
        if not entry.override_remote_existing_file and await sftp.lexists(final):
            raise _AlreadyThere
        parent = posixpath.dirname(final)
        if parent:
            await sftp.makedirs(parent, exist_ok=True)
        state.save_delivery(delivery)
        await sftp.put(local, temp)
        remote_size = (await sftp.stat(temp)).size
        if remote_size != stamp.size or FileStamp.of(local.stat()) != stamp:
            return await _undo(sftp, state, delivery, "failed",
                               f"size check failed ({stamp.size} bytes sent, remote "
                               f"has {remote_size}); sent again next run")
    except _AlreadyThere:
        return await _undo(sftp, state, delivery, "skipped", ALREADY_THERE)
    except CONNECTION_LOST:
        raise
    except (asyncssh.SFTPError, OSError) as exc:
        return await _undo(sftp, state, delivery, "failed", reason(exc))
    delivery = replace(delivery, stage=Stage.PUBLISHING)
    state.save_delivery(delivery)
    failed = await _publish_or_undo(sftp, entry, state, delivery)
    return failed or await _archive(entry, layout, state, delivery, flow_run_id, "")


async def _publish_or_undo(sftp: asyncssh.SFTPClient, entry: Uploader, state: TransferState,
                           delivery: Delivery) -> TransferResult | None:
    """Rename the complete temp file to its final name; None when done, else the row saying
    why not (the temp file is removed and the local file stays in clean/ for the next run)."""
    try:
        await _publish(sftp, delivery.remote_temp, delivery.remote_final,
                       replace=entry.override_remote_existing_file)
    except _AlreadyThere:
        return await _undo(sftp, state, delivery, "skipped", ALREADY_THERE)
    except CONNECTION_LOST:
        raise
    except asyncssh.SFTPError as exc:
        return await _undo(sftp, state, delivery, "failed", reason(exc))
    return None


async def _undo(sftp: asyncssh.SFTPClient, state: TransferState, delivery: Delivery,
                outcome: Outcome, detail: str) -> TransferResult:
    await _remove_quietly(sftp, delivery.remote_temp)
    state.finish_delivery(delivery.uploader, delivery.local_path)
    return TransferResult(delivery.local_path.as_posix(), 0, outcome, detail)


async def _publish(sftp: asyncssh.SFTPClient, temp: str, final: str, *, replace: bool) -> None:
    if not replace:
        try:
            await sftp.rename(temp, final)
        except asyncssh.SFTPError:
            if await sftp.lexists(final):
                raise _AlreadyThere from None
            raise
        return
    try:
        await sftp.posix_rename(temp, final)
    except asyncssh.SFTPOpUnsupported:
        # Without the extension a plain rename cannot replace: remove, then rename.
        await _remove_quietly(sftp, final)
        await sftp.rename(temp, final)


async def _resume(sftp: asyncssh.SFTPClient, entry: Uploader, layout: DataLayout,
                  state: TransferState, delivery: Delivery,
                  flow_run_id: str | None) -> TransferResult | None:
    """Finish or undo a delivery that a crash interrupted; None when it is simply redone."""
    temp_exists = await sftp.lexists(delivery.remote_temp)
    if delivery.stage is Stage.PUBLISHING:
        if temp_exists:
            failed = await _publish_or_undo(sftp, entry, state, delivery)
            if failed is not None:
                return failed
        return await _archive(entry, layout, state, delivery, flow_run_id,
                              "delivery finished after an interruption")
    if temp_exists:
        await _remove_quietly(sftp, delivery.remote_temp)
    state.finish_delivery(entry.name, delivery.local_path)
    return None


async def _archive(entry: Uploader, layout: DataLayout, state: TransferState,
                   delivery: Delivery, flow_run_id: str | None, detail: str) -> TransferResult:
    """Move the delivered file to uploadarchive/, hashed first: in clean/ it is still the
    file that was sent when its stamp says so (None when a newer version took its place)."""
    sha256 = await asyncio.to_thread(sha256_if_unchanged, layout.clean / delivery.local_path,
                                     delivery.stamp)
    archived = archive_uploaded(layout, delivery.local_path, delivery.stamp)
    state.finish_delivery(entry.name, delivery.local_path)
    # Named in the data root, as the scan's records name files (ssftp.audit_history).
    audit_event("upload", uploader=entry.name,
                file=(PurePosixPath("clean") / delivery.local_path).as_posix(),
                remote=f"{entry.host}:{entry.port}/{delivery.remote_final}",
                size=delivery.stamp.size, sha256=sha256,
                archived=archived.relative_to(layout.root).as_posix() if archived else None,
                flow_run_id=flow_run_id)
    note = detail or ("" if archived else "a newer version is in clean/ and is sent next")
    name = delivery.local_path.as_posix()
    return TransferResult(name, delivery.stamp.size, "uploaded", note, sha256)


async def _remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> None:
    """Best effort: a leftover temp file is harmless (its name marks it as in progress)."""
    with contextlib.suppress(asyncssh.SFTPError):
        await sftp.remove(path)
