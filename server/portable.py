"""``ssftp portable``: SFTPGo-style one-user server over a directory, with no config file.

For handing a partner a directory quickly. There is no scanning here: the user works directly
in the directory, with the same jail, permissions and atomic uploads as the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from server.app import log_listening, start_gateway
from ssftp.config.accounts import Account, AccountKind, parse_keys
from ssftp.errors import InvalidValueError
from ssftp.layout import DataLayout
from ssftp.logs import configure_logging
from ssftp.passwords import PasswordVerifier
from ssftp.permissions import Permissions, parse_permission_names
from ssftp.runtime.stop import run_until_stopped


def portable_account(
    directory: Path, username: str, password: str | None, public_keys: list[str],
    permissions: str,
) -> Account:
    keys = parse_keys(public_keys)
    if public_keys and not keys:
        raise InvalidValueError("none of the given public keys is a valid OpenSSH public key")
    if not password and not keys:
        raise InvalidValueError("give a password or a public key")
    names = [name.strip() for name in permissions.split(",") if name.strip()]
    return Account(
        username=username,
        kind=AccountKind.PORTABLE,
        root=directory.absolute(),
        permissions=Permissions(parse_permission_names(names)),
        password=PasswordVerifier.parse(password) if password else None,
        keys=keys,
    )


async def run_portable(account: Account, layout: DataLayout, host: str, port: int) -> None:
    configure_logging([layout.log])
    account.root.mkdir(parents=True, exist_ok=True)
    gateway = await start_gateway(
        lookup=lambda username: account if username == account.username else None,
        layout=layout, host=host, port=port,
    )
    log_listening(gateway)
    with contextlib.suppress(asyncio.CancelledError):
        await run_until_stopped()
    await gateway.close()
