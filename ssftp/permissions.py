"""Per-account permissions, named like SFTPGo's, and the check every SFTP operation passes.

Names are validated in ssftp.yaml; the server asks :meth:`Permissions.require` before acting, and
a refusal becomes ``SSH_FX_PERMISSION_DENIED`` plus a log line, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ssftp.errors import InvalidValueError, Refused


class Permission(StrEnum):
    LIST = "list"
    DOWNLOAD = "download"
    UPLOAD = "upload"
    OVERWRITE = "overwrite"
    DELETE = "delete"
    RENAME = "rename"
    CREATE_DIRS = "create_dirs"
    CHMOD = "chmod"
    CHTIMES = "chtimes"


# SFTPGo's finer-grained names map onto ours; link creation is never granted (see the jail).
_ALIASES = {
    "delete_files": Permission.DELETE,
    "delete_dirs": Permission.DELETE,
    "rename_files": Permission.RENAME,
    "rename_dirs": Permission.RENAME,
}
_NEVER = {
    "create_symlinks": "creating links is never allowed: a link could point out of the jail",
    "chown": "changing file owners is never allowed on a shared data root",
}

STAGING_DEFAULT = frozenset({Permission.LIST, Permission.UPLOAD, Permission.CREATE_DIRS})
CLEAN_DEFAULT = frozenset({Permission.LIST, Permission.DOWNLOAD})


def parse_permission_names(names: list[str]) -> frozenset[Permission]:
    """Turn configured names into permissions; ``*`` grants all of them."""
    granted: set[Permission] = set()
    for name in names:
        if name == "*":
            granted.update(Permission)
        elif name in _NEVER:
            raise InvalidValueError(f"permission {name!r} is not available: {_NEVER[name]}")
        elif name in _ALIASES:
            granted.add(_ALIASES[name])
        else:
            try:
                granted.add(Permission(name))
            except ValueError:
                known = ", ".join(sorted([*Permission, *_ALIASES]))
                raise InvalidValueError(f"unknown permission {name!r} (known: *, {known})"
                                        ) from None
    return frozenset(granted)


@dataclass(frozen=True)
class Permissions:
    granted: frozenset[Permission]

    def __contains__(self, permission: Permission) -> bool:
        return permission in self.granted

    def require(self, permission: Permission, action: str) -> None:
        if permission not in self.granted:
            raise Refused(f"{action} needs the {permission.value!r} permission")
