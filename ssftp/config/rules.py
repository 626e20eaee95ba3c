"""Checks across entries of a validated ssftp.yaml, each naming the entry it is about.

Errors stop the config from loading. Warnings load it but are printed by ``check-config`` and
logged at start and reload: sSFTP files carry plaintext passwords and sometimes placeholder keys,
and they must still load; the placeholder key simply cannot be used to log in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ssftp.config.issues import ConfigIssue, KeyPath
from ssftp.config.schema import AccountEntry, Downloader, SsftpConfig, Uploader
from ssftp.errors import PasswordFormatError, PublicKeyError
from ssftp.passwords import PasswordVerifier
from ssftp.public_keys import parse_public_key


def _accounts(config: SsftpConfig) -> Iterator[tuple[KeyPath, str, AccountEntry]]:
    """(key path, area list name, account) for every account."""
    for index, staging in enumerate(config.users.staging_dir):
        yield ("users", "stagingDir", index), "stagingDir", staging
    for index, clean in enumerate(config.users.clean_dir):
        yield ("users", "cleanDir", index), "cleanDir", clean


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def find_errors(config: SsftpConfig) -> list[ConfigIssue]:
    errors: list[ConfigIssue] = []
    seen_users: dict[str, KeyPath] = {}
    seen_dirs: dict[str, list[tuple[KeyPath, str]]] = {"stagingDir": [], "cleanDir": []}

    for path, area, account in _accounts(config):
        directory, username = account.directory, account.auth.username
        if username in seen_users:
            first = ConfigIssue(seen_users[username], "").dotted
            errors.append(ConfigIssue((*path, "auth", "username"),
                                      f"username {username!r} is already used by {first}"))
        seen_users.setdefault(username, path)

        for other_path, other in seen_dirs[area]:
            if directory != "*" and other != "*" and _overlaps(directory, other):
                what = "is the same as" if directory == other else "overlaps"
                errors.append(ConfigIssue(
                    (*path, "directory"),
                    f"{directory!r} {what} {other!r} of {ConfigIssue(other_path, '').dotted}: "
                    "accounts would see each other's files",
                ))
        seen_dirs[area].append((path, directory))

        if account.auth.password is not None:
            try:
                PasswordVerifier.parse(account.auth.password.get_secret_value())
            except PasswordFormatError as exc:
                errors.append(ConfigIssue((*path, "auth", "password"), str(exc)))

    names: dict[str, KeyPath] = {}
    endpoints: list[tuple[str, Sequence[Downloader | Uploader]]] = [
        ("sftpClientDownloaders", config.sftp_client_downloaders),
        ("sftpClientUploaders", config.sftp_client_uploaders)]
    for list_name, entries in endpoints:
        for index, entry in enumerate(entries):
            path = (list_name, index, "name")
            if entry.name in names:
                errors.append(ConfigIssue(path, f"name {entry.name!r} is already used by "
                                                f"{ConfigIssue(names[entry.name], '').dotted}"))
            names.setdefault(entry.name, path)
    errors.extend(_transfer_directory_errors(config))
    return errors


def _transfer_directory_errors(config: SsftpConfig) -> Iterator[ConfigIssue]:
    """Each downloader owns its staging directory, and each uploader its part of clean/.

    A downloader sharing a directory with a staging account (or another downloader) would mix
    their files and credit them to the wrong owner; two uploaders on one directory would race
    to send the same file twice.
    """
    owners: list[tuple[KeyPath, str]] = [
        (("users", "stagingDir", index, "directory"), account.directory)
        for index, account in enumerate(config.users.staging_dir)]
    for index, downloader in enumerate(config.sftp_client_downloaders):
        path: KeyPath = ("sftpClientDownloaders", index, "localStagingDirectory")
        directory = downloader.local_staging_directory
        if directory == "*":
            yield ConfigIssue(path, "'*' is not a staging directory; name one")
            continue
        yield from _overlap_errors(path, directory, owners, "their files would mix")
        owners.append((path, directory))
    uploaders: list[tuple[KeyPath, str]] = []
    for index, uploader in enumerate(config.sftp_client_uploaders):
        path = ("sftpClientUploaders", index, "localDirectoryToUpload")
        directory = uploader.local_directory_to_upload
        yield from _overlap_errors(path, directory, uploaders,
                                   "both would send the same files")
        uploaders.append((path, directory))


def _overlap_errors(path: KeyPath, directory: str, others: list[tuple[KeyPath, str]],
                    consequence: str) -> Iterator[ConfigIssue]:
    for other_path, other in others:
        if directory == "*" or other == "*" or _overlaps(directory, other):
            yield ConfigIssue(path, f"{directory!r} overlaps {other!r} of "
                                    f"{ConfigIssue(other_path, '').dotted}: {consequence}")


def find_warnings(config: SsftpConfig) -> list[ConfigIssue]:
    warnings: list[ConfigIssue] = []
    all_accounts = [*config.users.staging_dir, *config.users.clean_dir]
    for (path, _, _), account in zip(_accounts(config), all_accounts, strict=True):
        password = account.auth.password
        if password is not None and password.get_secret_value():
            try:
                if PasswordVerifier.parse(password.get_secret_value()).scheme == "plaintext":
                    warnings.append(ConfigIssue(
                        (*path, "auth", "password"),
                        "plaintext password; store a hash instead (ssftp hash-password)",
                    ))
            except PasswordFormatError:
                pass  # reported as an error
        for key_index, line in enumerate(account.auth.public_keys):
            try:
                parse_public_key(line)
            except PublicKeyError as exc:
                key_path: KeyPath = (*path, "auth", "publicKey")
                if len(account.auth.public_keys) > 1:
                    key_path = (*key_path, key_index)
                warnings.append(ConfigIssue(key_path, f"{exc}; this key is ignored"))
    if not config.enable_virus_scan:
        warnings.append(ConfigIssue(("enableVirusScan",),
                                    "scanning is OFF: uploads go to clean/ without a scan"))
    if not config.enable_file_scavenging:
        warnings.append(ConfigIssue(("enableFileScavenging",),
                                    "ignored: ssftp always rescans files left in staging"))
    return warnings
