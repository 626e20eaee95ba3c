"""Who put a staged file there: the staging account, or the downloader, that owns its directory.

Audit records and webhooks name the owner (sSFTP's webhook left ``username`` empty). Built from
the config, so a reload that adds an account names its files from then on.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ssftp.config.schema import SsftpConfig


class StagingOwners:
    def __init__(self, config: SsftpConfig) -> None:
        owners = {entry.directory: entry.auth.username for entry in config.users.staging_dir}
        for downloader in config.sftp_client_downloaders:
            owners.setdefault(downloader.local_staging_directory,
                              f"downloader:{downloader.name}")
        # Longest directory first, so "a/b" wins over "a" for files below a/b.
        self._owners = sorted(owners.items(), key=lambda item: -len(item[0]))

    def owner_of(self, sub_path: PurePosixPath) -> str | None:
        """The owner of a file at ``staging/<sub_path>``; None for a directory nobody owns."""
        text = sub_path.as_posix()
        for directory, owner in self._owners:
            if text.startswith(directory + "/"):
                return owner
        return None
