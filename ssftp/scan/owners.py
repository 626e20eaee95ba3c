"""Who put a staged file there: the staging account, or the downloader, that owns its directory,
and the content policy its files are judged by (:mod:`ssftp.scan.policy`).

Audit records and webhooks name the owner (sSFTP's webhook left ``username`` empty). Built from
the config, so a reload that adds an account names its files, and applies its rules, from then on.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ssftp.config.schema import ContentRules, SsftpConfig
from ssftp.scan.policy import ContentPolicy


def policy_of(rules: ContentRules | None, config: SsftpConfig) -> ContentPolicy:
    """An owner's policy: its own rules (none for a file nobody owns) and the global denials."""
    denied = tuple(config.scanning.denied_file_types)
    if rules is None:
        return ContentPolicy(denied_types=denied)
    allowed = rules.allowed_file_types
    return ContentPolicy(allow_encrypted=rules.allow_encrypted,
                         allowed_types=None if allowed is None else tuple(allowed),
                         denied_types=denied + tuple(rules.denied_file_types))


class StagingOwners:
    def __init__(self, config: SsftpConfig) -> None:
        owners: dict[str, tuple[str, ContentPolicy]] = {
            entry.directory: (entry.auth.username, policy_of(entry, config))
            for entry in config.users.staging_dir}
        for downloader in config.sftp_client_downloaders:
            owners.setdefault(downloader.local_staging_directory,
                              (f"downloader:{downloader.name}", policy_of(downloader, config)))
        # Longest directory first, so "a/b" wins over "a" for files below a/b.
        self._owners = sorted(owners.items(), key=lambda item: -len(item[0]))
        self._nobodys = policy_of(None, config)

    def _entry(self, sub_path: PurePosixPath) -> tuple[str, ContentPolicy] | None:
        text = sub_path.as_posix()
        for directory, entry in self._owners:
            if text.startswith(directory + "/"):
                return entry
        return None

    def owner_of(self, sub_path: PurePosixPath) -> str | None:
        """The owner of a file at ``staging/<sub_path>``; None for a directory nobody owns."""
        entry = self._entry(sub_path)
        return None if entry is None else entry[0]

    def policy_for(self, sub_path: PurePosixPath) -> ContentPolicy:
        """The policy a file at ``staging/<sub_path>`` is judged by."""
        entry = self._entry(sub_path)
        return self._nobodys if entry is None else entry[1]
