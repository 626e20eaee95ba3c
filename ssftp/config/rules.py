"""Checks across entries of a validated ssftp.yaml, each naming the entry it is about.

Errors stop the config from loading. Warnings load it but are printed by ``check-config`` and
logged at start and reload: sSFTP files carry plaintext passwords and sometimes placeholder keys,
and they must still load; the placeholder key simply cannot be used to log in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ssftp.config.schema import AccountEntry, Downloader, SsftpConfig, Uploader
from ssftp.errors import ConfigIssue, KeyPath, PasswordFormatError, PublicKeyError
from ssftp.passwords import PasswordVerifier
from ssftp.public_keys import parse_public_key


def _accounts(config: SsftpConfig) -> Iterator[tuple[KeyPath, str, AccountEntry]]:
    """(key path, area list name, account) for every account."""
    for index, staging in enumerate(config.users.staging_dir):
        yield ("users", "stagingDir", index), "stagingDir", staging
    for index, clean in enumerate(config.users.clean_dir):
        yield ("users", "cleanDir", index), "cleanDir", clean


# Every overlap of a config a person wrote is named; the bound is for configs nobody did: n
# accounts on one directory overlap in n·(n-1)/2 pairs, more lines than anyone reads.
MAX_REPORTED_OVERLAPS = 100

# Where a directory is named (the entry's key path), and the directory ("*": the whole area).
_Claim = tuple[KeyPath, str]


def _components(directory: str) -> tuple[str, ...]:
    return () if directory == "*" else tuple(directory.split("/"))


def _contains(outer: str, inner: str) -> bool:
    return outer in ("*", inner) or inner.startswith(outer + "/")


@dataclass(frozen=True)
class _Overlaps:
    """For each claim, the earlier claims whose directories overlap its own, in file order."""

    earlier: dict[KeyPath, list[_Claim]]
    # More pairs overlap than MAX_REPORTED_OVERLAPS; ``earlier`` holds that many of them.
    truncated: bool

    def of(self, path: KeyPath) -> list[_Claim]:
        return self.earlier.get(path, [])

    def notes(self, path: KeyPath) -> list[ConfigIssue]:
        """One line saying the list of overlaps below ``path`` is cut short, if it is."""
        return [ConfigIssue(path, f"more than {MAX_REPORTED_OVERLAPS} pairs of directories "
                                  "overlap; only those are listed")] if self.truncated else []


def _find_overlaps(claims: Sequence[_Claim], reported_from: int = 0) -> _Overlaps:
    """The overlapping pairs of claims whose later claim is at ``reported_from`` or after (the
    ones before are only there to be overlapped).

    Sorted by components, the directories inside a directory come right after it. So one pass,
    keeping the chain of claims that contain the current one, meets each overlapping pair
    exactly once: O(n log n) plus one step per pair, where
    comparing each claim with every earlier one took over a minute for 60 000 accounts.
    """
    order = sorted(range(len(claims)), key=lambda index: (_components(claims[index][1]), index))
    chain: list[int] = []  # claims containing the current one, outermost first
    reported_chain: list[int] = []  # the part of chain at reported_from or after
    pairs: dict[int, list[int]] = defaultdict(list)
    found = 0
    for current in order:
        while chain and not _contains(claims[chain[-1]][1], claims[current][1]):
            if chain.pop() >= reported_from:
                reported_chain.pop()
        for other in chain if current >= reported_from else reported_chain:
            found += 1
            if found > MAX_REPORTED_OVERLAPS:
                return _overlaps_by_path(claims, pairs, truncated=True)
            pairs[max(other, current)].append(min(other, current))
        chain.append(current)
        if current >= reported_from:
            reported_chain.append(current)
    return _overlaps_by_path(claims, pairs, truncated=False)


def _overlaps_by_path(claims: Sequence[_Claim], pairs: dict[int, list[int]],
                      truncated: bool) -> _Overlaps:
    earlier = {claims[later][0]: [claims[index] for index in sorted(others)]
               for later, others in pairs.items()}
    return _Overlaps(earlier, truncated)


def find_errors(config: SsftpConfig) -> list[ConfigIssue]:
    errors: list[ConfigIssue] = []
    seen_users: dict[str, KeyPath] = {}
    accounts = list(_accounts(config))
    # A '*' account sees the whole area by design; it overlaps no account's own directory.
    overlaps = {area: _find_overlaps([(path, account.directory)
                                      for path, in_area, account in accounts
                                      if in_area == area and account.directory != "*"])
                for area in ("stagingDir", "cleanDir")}

    for path, area, account in accounts:
        directory, username = account.directory, account.auth.username
        if username in seen_users:
            first = ConfigIssue(seen_users[username], "").dotted
            errors.append(ConfigIssue((*path, "auth", "username"),
                                      f"username {username!r} is already used by {first}"))
        seen_users.setdefault(username, path)

        for other_path, other in overlaps[area].of(path):
            what = "is the same as" if directory == other else "overlaps"
            errors.append(ConfigIssue(
                (*path, "directory"),
                f"{directory!r} {what} {other!r} of {ConfigIssue(other_path, '').dotted}: "
                "accounts would see each other's files",
            ))

        if account.auth.password is not None:
            try:
                PasswordVerifier.parse(account.auth.password.get_secret_value())
            except PasswordFormatError as exc:
                errors.append(ConfigIssue((*path, "auth", "password"), str(exc)))
    for area, found in overlaps.items():
        errors.extend(found.notes(("users", area)))

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
    owners: list[_Claim] = [(("users", "stagingDir", index, "directory"), account.directory)
                           for index, account in enumerate(config.users.staging_dir)]
    downloaders: list[_Claim] = [
        (("sftpClientDownloaders", index, "localStagingDirectory"),
         downloader.local_staging_directory)
        for index, downloader in enumerate(config.sftp_client_downloaders)]
    found = _find_overlaps([*owners, *((path, directory) for path, directory in downloaders
                                       if directory != "*")], reported_from=len(owners))
    for path, directory in downloaders:
        if directory == "*":
            yield ConfigIssue(path, "'*' is not a staging directory; name one")
        yield from _overlap_errors(path, directory, found.of(path), "their files would mix")
    yield from found.notes(("sftpClientDownloaders",))

    uploaders: list[_Claim] = [
        (("sftpClientUploaders", index, "localDirectoryToUpload"),
         uploader.local_directory_to_upload)
        for index, uploader in enumerate(config.sftp_client_uploaders)]
    found = _find_overlaps(uploaders)
    for path, directory in uploaders:
        yield from _overlap_errors(path, directory, found.of(path),
                                   "both would send the same files")
    yield from found.notes(("sftpClientUploaders",))


def _overlap_errors(path: KeyPath, directory: str, others: list[_Claim],
                    consequence: str) -> Iterator[ConfigIssue]:
    for other_path, other in others:
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
    warnings += _encrypted_allowed(config)
    return warnings


def _encrypted_allowed(config: SsftpConfig) -> Iterator[ConfigIssue]:
    """Each owner that lets encrypted files through: no scanner sees inside what it sends."""
    owners: list[tuple[KeyPath, str, bool]] = [
        *((("users", "stagingDir", index, "allowEncrypted"), account.auth.username,
           account.allow_encrypted) for index, account in enumerate(config.users.staging_dir)),
        *((("sftpClientDownloaders", index, "allowEncrypted"), f"downloader {downloader.name}",
           downloader.allow_encrypted)
          for index, downloader in enumerate(config.sftp_client_downloaders))]
    for path, owner, allowed in owners:
        if allowed:
            yield ConfigIssue(path, f"{owner}'s encrypted archives and documents pass to "
                                    "clean/ uninspected (no scanner can look inside them)")
