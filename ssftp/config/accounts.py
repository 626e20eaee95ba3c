"""Accounts as the server uses them: who may log in, with what, and where their jail is.

Built once per config load, so a login costs a dict lookup and a hash check, and so a reload
swaps the whole set at once: a session keeps the account it logged in with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath

from ssftp.addresses import AddressFilter
from ssftp.config.schema import (
    Bandwidth,
    CleanAccount,
    FilePatterns,
    Quota,
    SsftpConfig,
    StagingAccount,
)
from ssftp.errors import PublicKeyError
from ssftp.file_patterns import FilePatternRules, NameRules, rules_by_directory
from ssftp.layout import DataLayout
from ssftp.passwords import PasswordVerifier
from ssftp.permissions import (
    CLEAN_DEFAULT,
    STAGING_DEFAULT,
    Permission,
    Permissions,
    parse_permission_names,
)
from ssftp.public_keys import AuthorizedKey, parse_public_key


class AccountKind(StrEnum):
    STAGING = "staging"
    CLEAN = "clean"
    PORTABLE = "portable"


@dataclass(frozen=True)
class Account:
    username: str
    kind: AccountKind
    root: Path
    permissions: Permissions
    password: PasswordVerifier | None
    keys: tuple[AuthorizedKey, ...]
    # The root's name in the data root (``clean/partner1``), as audit records name files;
    # None where the root is no area of a data root (portable mode).
    data_name: PurePosixPath | None = None
    # Its filePatterns, compiled; None when it has none, and no name is checked.
    file_patterns: FilePatternRules | None = None
    max_sessions: int | None = None  # its sessions at once, in all its connections
    quota: Quota | None = None  # what its area may hold (server.quota); None: nothing is counted
    # Its allowedIps and deniedIps: the addresses it may log in from.
    address_filter: AddressFilter = field(default_factory=AddressFilter)
    # Its own bandwidth keys, over limits.bandwidth (server.bandwidth).
    bandwidth: Bandwidth = field(default_factory=Bandwidth)

    def key_matching(self, blob: bytes) -> AuthorizedKey | None:
        return next((key for key in self.keys if key.blob == blob), None)

    def data_name_of(self, virtual: str) -> str | None:
        """The data root's name of the file the account sees at ``virtual``."""
        if self.data_name is None:
            return None
        return (self.data_name / virtual.lstrip("/")).as_posix()


def parse_keys(lines: list[str]) -> tuple[AuthorizedKey, ...]:
    """Usable keys only; unusable ones are reported as config warnings and cannot log in."""
    keys = []
    for line in lines:
        try:
            keys.append(parse_public_key(line))
        except PublicKeyError:
            continue
    return tuple(keys)


def _file_pattern_rules(patterns: FilePatterns | None) -> FilePatternRules | None:
    if patterns is None:
        return None
    return rules_by_directory({
        (): NameRules.of(patterns.allowed, patterns.denied),
        **{tuple(directory.split("/")): NameRules.of(rules.allowed, rules.denied)
           for directory, rules in patterns.directories.items()}})


def _account(entry: StagingAccount | CleanAccount, layout: DataLayout) -> Account:
    if isinstance(entry, StagingAccount):
        kind, root, granted = AccountKind.STAGING, layout.staging / entry.directory, STAGING_DEFAULT
    else:
        kind = AccountKind.CLEAN
        root = layout.clean if entry.directory == "*" else layout.clean / entry.directory
        granted = CLEAN_DEFAULT | ({Permission.DELETE} if entry.allow_delete else set())
    if entry.permissions is not None:
        granted = parse_permission_names(entry.permissions)
    password = entry.auth.password.get_secret_value() if entry.auth.password else ""
    return Account(
        username=entry.auth.username,
        kind=kind,
        root=root,
        permissions=Permissions(frozenset(granted)),
        password=PasswordVerifier.parse(password) if password else None,
        keys=parse_keys(entry.auth.public_keys),
        data_name=PurePosixPath(root.relative_to(layout.root).as_posix()),
        file_patterns=_file_pattern_rules(entry.file_patterns),
        max_sessions=entry.max_sessions,
        quota=entry.quota,
        address_filter=entry.address_filter,
        bandwidth=entry.bandwidth,
    )


def accounts_from_config(config: SsftpConfig, layout: DataLayout) -> Mapping[str, Account]:
    entries: list[StagingAccount | CleanAccount] = [*config.users.staging_dir,
                                                     *config.users.clean_dir]
    return {entry.auth.username: _account(entry, layout) for entry in entries}
