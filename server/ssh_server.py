"""The SSH side of a connection: who is logging in, with what, and whether to let them.

Accounts come from a lookup function that is called at each login, so a config reload applies
to the next login while established sessions keep the account they logged in with. Password
checks run off the event loop (bcrypt and argon2 are slow on purpose), and an unknown user costs
the same as a wrong password, so timing does not reveal which usernames exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncssh

from server.algorithms import modern_signatures
from server.defender import Defender
from server.sftp_session import SessionContext
from ssftp.accounts import Account
from ssftp.config.schema import LimitsSettings
from ssftp.logs import APP, log_event
from ssftp.passwords import DUMMY_VERIFIER
from ssftp.public_keys import fingerprint_of

logger = logging.getLogger(APP)

AccountLookup = Callable[[str], Account | None]


class AccountSSHServer(asyncssh.SSHServer):
    def __init__(self, lookup: AccountLookup, defender: Defender, durable_uploads: bool,
                 limits: LimitsSettings) -> None:
        self._lookup = lookup
        self._defender = defender
        self._durable_uploads = durable_uploads
        self._limits = limits
        self._ip = "?"
        self._username = ""
        self._account: Account | None = None
        self._method = ""
        self._key = ""
        self._key_rejected = False
        self.context: SessionContext | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self._ip = str(peer[0]) if peer else "?"

    def begin_auth(self, username: str) -> bool:
        self._username = username
        self._account = self._lookup(username)
        return True  # always require authentication, known user or not

    def _count_failure(self) -> None:
        if self._defender.record_failure(self._ip):
            log_event(logger, "address banned", logging.WARNING, ip=self._ip,
                      seconds=self._defender.ban_seconds)

    def _settle(self, ok: bool, method: str, key: str = "") -> bool:
        """Apply the ban and log a failure; success is logged once auth completes.

        Each wrong password counts towards a ban. A key the account does not have does not:
        clients offer every key they hold, so that is normal; a connection that ends without
        logging in counts once instead (see connection_lost)."""
        banned = self._defender.is_banned(self._ip)
        if ok and not banned:
            self._method, self._key = method, key
            return True
        fields = {"user": self._username, "ip": self._ip, "method": method, "ok": False}
        if key:
            fields["key"] = key
        if banned:
            fields["reason"] = "address banned after repeated failures"
        elif method == "password":
            self._count_failure()
        else:
            self._key_rejected = True
        log_event(logger, "login", logging.WARNING, **fields)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.context is None and self._key_rejected:
            self._count_failure()

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        account = self._account
        verifier = account.password if account and account.password else DUMMY_VERIFIER
        matched = await asyncio.to_thread(verifier.verify, password)
        return self._settle(matched and verifier is not DUMMY_VERIFIER, "password")

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh verifies the client's signature with any algorithm the key type knows,
        # whatever signature_algs says; narrowing this key object (the one it then verifies
        # with) makes an ssh-rsa (SHA-1) signature fail.
        key.all_sig_algorithms = set(modern_signatures(key.all_sig_algorithms))
        blob = key.public_data
        matched = self._account is not None and self._account.key_matching(blob) is not None
        return self._settle(matched, "publickey", fingerprint_of(blob))

    def auth_completed(self) -> None:
        assert self._account is not None
        self._defender.record_success(self._ip)
        self._account.root.mkdir(parents=True, exist_ok=True)
        self.context = SessionContext(self._account, self._ip, self._durable_uploads,
                                      self._limits)
        fields = {"user": self._username, "ip": self._ip, "method": self._method, "ok": True}
        if self._key:
            fields["key"] = self._key
        log_event(logger, "login", **fields)
