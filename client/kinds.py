"""The two kinds of transfer, downloads and uploads, as values instead of a string to branch on.

Everything that differs between a downloader run and an uploader run is a field here: the words
its messages use, the ssftp.yaml switch and list it reads, the body that does the work. So the
flows and the deployments are written once for both kinds, and the type checker sees that a
downloader's entry only ever reaches the download body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Generic, TypeVar

import asyncssh

from client.connection import open_sftp
from client.download import download_files
from client.upload import upload_files
from ssftp.config.schema import Downloader, SsftpConfig, Uploader
from ssftp.errors import TransferError
from ssftp.layout import DataLayout
from ssftp.transfer.local import Outcome, TransferResult
from ssftp.transfer.state import TransferState

# One entry of ssftp.yaml's sftpClientDownloaders or sftpClientUploaders.
Entry = TypeVar("Entry", Downloader, Uploader)

# The work of one run over an open session: (entry, layout, state, sftp, flow run id) -> rows.
Body = Callable[[Entry, DataLayout, TransferState, asyncssh.SFTPClient, str | None],
                Awaitable[list[TransferResult]]]


@dataclass(frozen=True)
class TransferKind(Generic[Entry]):
    # The flow's name; also the first word of run names, artifact keys and run lock files.
    name: str
    # What one entry is called in messages to the operator.
    role: str
    # A transferred file's result in the run's table.
    done: Outcome
    # Its ``direction`` in ``ssftp_transfers_total`` (the SFTP server's are upload, download).
    direction: str
    # The ssftp.yaml key that switches the whole kind on.
    switch: str
    enabled: Callable[[SsftpConfig], bool]
    entries: Callable[[SsftpConfig], Sequence[Entry]]
    body: Body[Entry]
    # How a moved file (a row's ``file``) is named locally, ``<account dir>/<sub path>``, as
    # its scan events name it: a download's row names its sub path under the downloader's
    # staging directory, an upload's is that already.
    local_name: Callable[[Entry, str], str]

    def find(self, config: SsftpConfig, name: str, source: str) -> Entry:
        for entry in self.entries(config):
            if entry.name == name:
                return entry
        raise TransferError(f"there is no {self.role} named {name!r} in {source}")

    def scheduled(self, config: SsftpConfig) -> Sequence[Entry]:
        """The entries that get a schedule: every one, or none while the kind is switched off."""
        return self.entries(config) if self.enabled(config) else ()

    async def run(self, entry: Entry, layout: DataLayout, timeout: float,
                  flow_run_id: str | None) -> list[TransferResult]:
        """Connect to the entry's server and do the work; the connection's failures arrive
        as TransferErrors (``client.connection``), a file's failure as a row."""
        with TransferState.open(layout.system) as state:
            async with open_sftp(entry, layout.system, timeout) as sftp:
                rows = await self.body(entry, layout, state, sftp, flow_run_id)
            state.add_to_totals(self.direction, [
                "ok" if row.outcome == self.done else "failed" for row in rows
                if row.outcome in (self.done, "failed")])
            return rows


DOWNLOAD: TransferKind[Downloader] = TransferKind(
    name="download", role="downloader", done="downloaded", direction="pull",
    switch="enableSftpClientDownloader",
    enabled=lambda config: config.enable_sftp_client_downloader,
    entries=lambda config: config.sftp_client_downloaders,
    body=download_files,
    local_name=lambda entry, file: (PurePosixPath(entry.local_staging_directory)
                                    / file).as_posix())

UPLOAD: TransferKind[Uploader] = TransferKind(
    name="upload", role="uploader", done="uploaded", direction="push",
    switch="enableSftpClientUploader",
    enabled=lambda config: config.enable_sftp_client_uploader,
    entries=lambda config: config.sftp_client_uploaders,
    body=upload_files,
    local_name=lambda entry, file: file)
