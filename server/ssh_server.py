"""The SSH side of a connection: who is logging in, with what, and whether to let them.

Accounts come from a lookup function that is called at each login, so a config reload applies
to the next login while established sessions keep the account they logged in with. Password
checks run off the event loop (bcrypt and argon2 are slow on purpose), and an unknown user costs
the same as a wrong password, so timing does not reveal which usernames exist.

The limits that span connections (per account, per address, and those still logging in) are
counted in one :class:`Occupancy` per listener, and all connections of the process against its
descriptor budget (server.descriptors); a connection beyond one is disconnected with the
reason, which clients show ("too many connections from 127.0.0.1 (50)"). The limits are asked
at each check, so that a reload applies to the next connection, login and channel; so are the
address filters: ``limits``' at the connection, the account's at its login, which then fails
as a wrong password does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.packet import PacketDecodeError, SSHPacket
from asyncssh.session import DataType
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHReader, SSHServerStreamSession, SSHWriter

from server.algorithms import SIGNATURE_NAMES, modern_signatures
from server.bandwidth import Buckets, Throttles
from server.compat import run_sftp_server
from server.defender import Defender
from server.descriptors import process_budget
from server.exec_commands import run_command
from server.in_flight import ChannelBytes, ConnectionBytes, ProcessBytes
from server.log_summary import MAX_KEYS, LogSummary
from server.packet_receive import feed_in_packets
from server.packet_send import trim_channel, trim_connection
from server.sftp_session import SessionContext, SFTPSession
from server.verdict_wait import VerdictWatch
from ssftp.config.accounts import Account
from ssftp.config.schema import LimitsSettings, Quota
from ssftp.logs import APP, log_event, one_line
from ssftp.metrics import LOGINS, REFUSED_CONNECTIONS, SESSIONS
from ssftp.passwords import DUMMY_VERIFIER
from ssftp.public_keys import fingerprint_of

logger = logging.getLogger(APP)

AccountLookup = Callable[[str], Account | None]


def _current_quota(lookup: AccountLookup, account: Account) -> Quota | None:
    """The account's quota as the config has it now, so that a reload applies to a logged-in
    session's next OPEN (server.quota); the login's when the account has left the config."""
    return (lookup(account.username) or account).quota


# What asyncssh's login timer closes a connection with (asyncssh is pinned).
LOGIN_TIMEOUT_REASON = "Login timeout expired"
# What a banned client is told, as an authentication banner and as the disconnect's reason:
# OpenSSH's sftp shows the reason ("Received disconnect from ...: address temporarily
# banned"), paramiko keeps the banner (``Transport.get_banner``) and logs both.
BANNED = "address temporarily banned after repeated failed logins"


@dataclass
class Occupancy:
    """What the connections of one listener hold now."""

    unauthenticated: int = 0
    by_address: Counter[str] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)
    hashing: Counter[str] = field(default_factory=Counter)  # hash commands running, by account
    # SFTP channels (and exec channels) open, by account and by address.
    sessions_by_account: Counter[str] = field(default_factory=Counter)
    sessions_by_address: Counter[str] = field(default_factory=Counter)

    def leave(self, counter: Counter[str], key: str) -> None:
        """Count one less, forgetting keys at zero (addresses come and go for months)."""
        counter[key] -= 1
        if counter[key] <= 0:
            del counter[key]


class _CountedSFTPChannel(SSHServerStreamSession[bytes]):
    """asyncssh's own SFTP channel session (what ``sftp_factory`` gives), which also tells its
    connection when it closes (asyncssh has no public way to count open channels), reads no
    further request while the replies are not being read, and counts what it holds in its
    connection's bytes in flight (server.in_flight).

    asyncssh's SFTP server handles one request at a time and writes each reply without
    waiting; a client that pipelines READs and reads no reply makes it buffer every reply
    (20 000 of 32 KiB: 600 MiB). Waiting here, before the next request is read, until the
    channel's write buffer is below its limit (asyncssh's high-water mark, 64 KiB) bounds
    that to one reply; the client's requests then wait in its own send window. The reply's
    room in the connection's budget is given back then.

    The channel is never paused on the way in: asyncssh's pause keeps what arrives in the
    channel's own buffer, where no count sees it, and its window adjusts let the client send
    on regardless (server.in_flight). What this session's buffer holds is counted instead,
    at each change (asyncssh's two hooks below), and the connection's socket is paused when
    the connection holds too much.

    The SFTP session itself runs in server.compat's handler (asyncssh's, the OpenSSH way:
    an exit status at the end, trailing bytes in requests ignored).
    """

    def __init__(self, sftp_factory: Callable[[SSHChannel[bytes]], SFTPSession],
                 on_close: Callable[[], None], flow: ChannelBytes,
                 hashing: Counter[str]) -> None:
        super().__init__(self._start_exec, sftp_factory, MIN_SFTP_VERSION, allow_scp=False)
        self._on_close = on_close
        self._session_factory_for_exec = sftp_factory
        self._flow = flow
        self._hashing = hashing

    def _start_exec(self, stdin: SSHReader[bytes], stdout: SSHWriter[bytes],
                    stderr: SSHWriter[bytes]) -> Awaitable[None]:
        """Every channel that is not SFTP (exec, shell, another subsystem) goes here: the hash
        commands run in an SFTP session of their own (server.exec_commands), everything else
        is refused there. In bytes, as asyncssh sets up its SFTP channels: a command's input
        is a file's bytes, not text."""
        assert self._chan is not None
        self._chan.set_encoding(None)
        self._encoding = None
        session = self._session_factory_for_exec(self._chan)
        return self._run_exec(self._chan, session, self._hashing, stdin, stdout, stderr)

    @staticmethod
    async def _run_exec(chan: SSHChannel[bytes], session: SFTPSession, hashing: Counter[str],
                        stdin: SSHReader[bytes], stdout: SSHWriter[bytes],
                        stderr: SSHWriter[bytes]) -> None:
        try:
            status = await run_command(chan.get_command(), session, hashing, stdin, stdout,
                                       stderr)
        finally:
            session.exit()  # asyncssh calls it only for the SFTP sessions it runs itself
        assert isinstance(chan, asyncssh.SSHServerChannel)
        chan.exit(status)

    def session_started(self) -> None:
        """What asyncssh's own does for the ``sftp`` subsystem, with server.compat's handler.
        Anything else (exec, shell, another subsystem) is asyncssh's too: see _start_exec."""
        assert self._chan is not None and self._conn is not None
        if self._chan.get_subsystem() != "sftp":
            super().session_started()
            return
        trim_channel(self._chan)
        stdin, stdout = SSHReader[bytes](self, self._chan), SSHWriter[bytes](self, self._chan)
        server = self._init_sftp_server()
        assert isinstance(server, SFTPSession)
        self._conn.create_task(run_sftp_server(server, stdin, stdout, self._sftp_version,
                                               lambda: self._recv_buf_len),
                               stdin.logger)

    async def read(self, datatype: DataType, n: int, exact: bool) -> bytes:
        await self.drain(datatype)
        self._flow.sent()
        return await super().read(datatype, n, exact)

    def _maybe_pause_reading(self) -> bool:
        """asyncssh's hook after data arrived (in SSHStreamSession.data_received)."""
        self._flow.buffered(self._recv_buf_len)
        return False

    def _maybe_resume_reading(self) -> bool:
        """asyncssh's hook after a read took data (in SSHStreamSession.read)."""
        self._flow.buffered(self._recv_buf_len)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._flow.close()
        self._on_close()


def _reading_switches(conn: asyncssh.SSHServerConnection,
                      ) -> tuple[Callable[[], None], Callable[[], None]]:
    """Pause and resume reading the connection's socket: asyncio's transport, which asyncssh
    keeps as ``_transport`` (no public accessor; asyncssh is pinned). A closing transport is
    left alone."""
    transport = conn._transport
    assert transport is not None  # set before asyncssh calls connection_made here

    def pause() -> None:
        if not transport.is_closing():
            transport.pause_reading()

    def resume() -> None:
        if not transport.is_closing():
            transport.resume_reading()

    return pause, resume


class AccountSSHServer(asyncssh.SSHServer):
    def __init__(self, lookup: AccountLookup, defender: Defender, durable_uploads: bool,
                 limits: Callable[[], LimitsSettings], occupancy: Occupancy,
                 refusals: LogSummary, in_flight: ProcessBytes, login_grace_seconds: float,
                 throttles: Throttles, verdicts: VerdictWatch | None = None) -> None:
        self._lookup = lookup
        self._throttles = throttles
        self._verdicts = verdicts
        self._defender = defender
        self._durable_uploads = durable_uploads
        self._limits = limits
        self._occupancy = occupancy
        self._refusals = refusals
        # This connection's refused requests, in summary too (a client may repeat them).
        self._request_refusals = LogSummary(refusals.interval, MAX_KEYS)
        self._in_flight = in_flight
        self._bytes: ConnectionBytes | None = None  # once connected
        self._login_grace_seconds = login_grace_seconds  # asyncssh's, set at start
        self._conn: asyncssh.SSHServerConnection | None = None
        self._has_descriptor = False  # counted in the process's descriptor budget
        self._admitted = False  # counted by address and as unauthenticated
        self._account_slot = ""  # the account this connection is counted for, once logged in
        self._sessions = 0
        self._session_limit_logged = False
        self._ip = "?"
        self._port = 0  # the client's, which names the connection in a balancer's log too
        self._username = ""
        self._account: Account | None = None
        self._method = ""
        self._key = ""
        self._key_rejected = False
        self.context: SessionContext | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        trim_connection(conn)
        feed_in_packets(conn)
        peer = conn.get_extra_info("peername")
        self._ip = str(peer[0]) if peer else "?"
        self._port = int(peer[1]) if peer else 0
        self._conn = conn
        self._bytes = ConnectionBytes(self._in_flight, *_reading_switches(conn))
        occupancy, limits, budget = self._occupancy, self._limits(), process_budget()
        # Disconnected in the next turn of the loop: asyncssh sends its version line once this
        # returns, and a client shows the reason only after it.
        rule = limits.address_filter.refusal(self._ip)
        if rule is not None:
            asyncio.get_running_loop().call_soon(self._refuse_address, rule)
            return
        self._has_descriptor = True
        if not budget.connection_opened():
            asyncio.get_running_loop().call_soon(self._refuse, "processConnections",
                                                 budget.connections,
                                                 "server is busy: too many connections")
        elif occupancy.unauthenticated >= limits.max_unauthenticated_connections:
            asyncio.get_running_loop().call_soon(self._refuse, "maxUnauthenticatedConnections",
                                                 limits.max_unauthenticated_connections,
                                                 "too many connections logging in")
        elif occupancy.by_address[self._ip] >= limits.max_connections_per_address:
            asyncio.get_running_loop().call_soon(self._refuse, "maxConnectionsPerAddress",
                                                 limits.max_connections_per_address,
                                                 f"too many connections from {self._ip}")
        else:
            self._admitted = True
            occupancy.unauthenticated += 1
            occupancy.by_address[self._ip] += 1

    def _refuse_address(self, rule: str) -> None:
        """Refuse an address ``limits.allowedIps`` or ``limits.deniedIps`` (``rule``) keeps
        out, before the key exchange: logged in summary per rule and address, as the limits
        are, and counted."""
        self._refusals.log((rule, self._ip), "connection refused", logging.WARNING,
                           ip=self._ip, reason="address not allowed", limit=rule)
        REFUSED_CONNECTIONS.labels(limit=rule).inc()
        assert self._conn is not None
        self._conn.disconnect(asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT, "address not allowed")

    def _refuse(self, limit: str, value: int, reason: str) -> None:
        """Log a connection limit (in summary, per limit and address) and disconnect with the
        reason, which clients show."""
        self._refusals.log((limit, self._ip), "limit reached", logging.WARNING, ip=self._ip,
                           limit=limit, user=self._username, value=value)
        REFUSED_CONNECTIONS.labels(limit=limit).inc()
        assert self._conn is not None
        self._conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, f"{reason} ({value})")

    def _take_account_slot(self) -> bool:
        """Count a login against its account, or refuse it when the account is full. Once:
        asyncssh asks validate_public_key twice for a key (offered, then signed)."""
        if self._account_slot:
            return True
        limit = self._limits().max_connections_per_account
        if self._occupancy.by_account[self._username] >= limit:
            self._refuse("maxConnectionsPerAccount", limit,
                         f"too many connections for {self._username}")
            return False
        self._account_slot = self._username
        self._occupancy.by_account[self._username] += 1
        self._occupancy.unauthenticated -= 1
        return True

    async def begin_auth(self, username: str) -> bool:
        """Look up the account, and whether the defender's bans changed (another server's
        ban, an unban), once per connection: the login's attempts then ask the bans held in
        memory."""
        self._username = username
        self._account = self._lookup(username)
        await self._defender.refresh()
        return True  # always require authentication, known user or not

    def _settle(self, ok: bool, method: str, key: str = "") -> bool:
        """Apply the ban and log a failure; success is logged once auth completes.

        Each wrong password counts towards a ban. A key the account does not have does not:
        clients offer every key they hold, so that is normal; a connection that ends without
        logging in counts once instead (see connection_lost). A banned address is told so and
        disconnected, at the attempt that got it banned too."""
        banned = self._defender.is_banned(self._ip)
        fields = {"key": key} if key else {}
        if ok and not banned:
            assert self._account is not None
            if self._account.address_filter.refusal(self._ip) is not None:
                # Told nothing more than a wrong password: the right credentials from an
                # address the account may not use (no failure towards a ban).
                self._log_login(method, "denied", reason="address not allowed for account",
                                **fields)
                return False
            self._method, self._key = method, key
            return self._take_account_slot()
        if banned:
            self._log_login(method, "banned", reason="address banned after repeated failures",
                            **fields)
            self._tell_banned()
        elif method == "password":
            self._log_login(method, "failed", **fields)
            if self._defender.record_failure(self._ip):
                self._tell_banned()
        else:
            self._key_rejected = True
            self._log_login(method, "failed", **fields)
        return False

    def _tell_banned(self) -> None:
        """The reason as a banner and in the disconnect (module constant BANNED)."""
        assert self._conn is not None
        self._conn.send_auth_banner(BANNED + "\r\n")
        self._conn.disconnect(asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT, BANNED)

    def _log_login(self, method: str, result: str, **fields: str) -> None:
        """The login's log line and its ``ssftp_logins_total`` count, from the same facts."""
        LOGINS.labels(method=method, result=result).inc()
        log_event(logger, "login", logging.INFO if result == "ok" else logging.WARNING,
                  user=self._username, ip=self._ip, port=self._port, method=method,
                  ok=result == "ok", **fields)

    def connection_lost(self, exc: Exception | None) -> None:
        self._request_refusals.flush()
        if self._has_descriptor:
            process_budget().connection_closed()
        if isinstance(exc, asyncssh.ConnectionLost) and exc.reason == LOGIN_TIMEOUT_REASON:
            self._refusals.log(("loginGraceSeconds", self._ip), "limit reached",
                               logging.WARNING, ip=self._ip, limit="loginGraceSeconds",
                               user=self._username, value=self._login_grace_seconds)
        if self.context is None and self._key_rejected:
            self._defender.record_failure(self._ip)
        if self.context is not None:
            SESSIONS.dec()
        if self._account_slot:
            self._occupancy.leave(self._occupancy.by_account, self._account_slot)
        elif self._admitted:
            self._occupancy.unauthenticated -= 1
        if self._admitted:
            self._occupancy.leave(self._occupancy.by_address, self._ip)

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
        fingerprint = fingerprint_of(blob)
        matched = self._account is not None and self._account.key_matching(blob) is not None
        if matched:  # the key asyncssh then checks the client's signature with
            key.verify = functools.partial(  # type: ignore[method-assign]
                self._verify_logged, key.verify, fingerprint)
        return self._settle(matched, "publickey", fingerprint)

    def _verify_logged(self, verify: Callable[[bytes, bytes], bool], fingerprint: str,
                       data: bytes, signature: bytes) -> bool:
        """asyncssh's check of the client's signature, and the reason logged when it fails:
        OpenSSH logs "signature algorithm ssh-rsa not in PubkeyAcceptedAlgorithms", while an
        old client signing with ssh-rsa (SHA-1; JSch 0.1.55) looked here like any failed
        login, even at debug."""
        if verify(data, signature):
            return True
        try:
            algorithm = SSHPacket(signature).get_string().decode("ascii", "replace")
        except PacketDecodeError:
            algorithm = "(unreadable)"
        if algorithm == "ssh-rsa":
            reason = ("signature algorithm ssh-rsa (SHA-1) not accepted: the client must sign "
                      "with rsa-sha2-256 or rsa-sha2-512, or use another key type")
        elif algorithm.encode() not in SIGNATURE_NAMES:
            reason = f"signature algorithm {one_line(algorithm)} not accepted"
        else:
            reason = "the signature does not verify"
        self._key_rejected = True
        self._log_login("publickey", "failed", key=fingerprint, reason=reason)
        return False

    def session_requested(self) -> _CountedSFTPChannel:
        """Open an SFTP channel, or refuse one beyond maxSessionsPerConnection (logged once
        per connection), the account's maxSessions or maxSessionsPerAddress (logged in
        summary, like refused connections): the client shows the reason."""
        limits, occupancy = self._limits(), self._occupancy
        limit = limits.max_sessions_per_connection
        if self._sessions >= limit:
            if not self._session_limit_logged:
                self._session_limit_logged = True
                log_event(logger, "limit reached", logging.WARNING, user=self._username,
                          ip=self._ip, limit="maxSessionsPerConnection", value=limit)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE,
                                            f"too many sessions on this connection ({limit})")
        assert self._account is not None
        account_limit = self._account.max_sessions
        if account_limit is not None and occupancy.sessions_by_account[self._username] >= \
                account_limit:
            self._refuse_session("maxSessions", account_limit, f"for {self._username}")
        if occupancy.sessions_by_address[self._ip] >= limits.max_sessions_per_address:
            self._refuse_session("maxSessionsPerAddress", limits.max_sessions_per_address,
                                 f"from {self._ip}")
        self._sessions += 1
        occupancy.sessions_by_account[self._username] += 1
        occupancy.sessions_by_address[self._ip] += 1
        assert self._bytes is not None
        flow = ChannelBytes(self._bytes)
        return _CountedSFTPChannel(functools.partial(self._start_sftp, flow=flow),
                                   self._session_closed, flow, self._occupancy.hashing)

    def _start_sftp(self, chan: SSHChannel[bytes], flow: ChannelBytes) -> SFTPSession:
        assert isinstance(chan, asyncssh.SSHServerChannel) and self.context is not None
        return SFTPSession(chan, self.context, flow)

    def _refuse_session(self, limit: str, value: int, whose: str) -> NoReturn:
        self._refusals.log((limit, self._ip, self._username), "limit reached", logging.WARNING,
                           ip=self._ip, limit=limit, user=self._username, value=value)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE,
                                        f"too many sessions {whose} ({value})")

    def _session_closed(self) -> None:
        self._sessions -= 1
        self._occupancy.leave(self._occupancy.sessions_by_account, self._username)
        self._occupancy.leave(self._occupancy.sessions_by_address, self._ip)

    def _bandwidth(self) -> Buckets:
        """The account's buckets at its bandwidth now: its entry as the config has it since
        the last reload (one no longer configured keeps what it logged in with), over
        ``limits.bandwidth``."""
        assert self._account is not None
        account = self._lookup(self._username) or self._account
        return self._throttles.buckets(self._username, account.bandwidth,
                                       self._limits().bandwidth)

    def auth_completed(self) -> None:
        assert self._account is not None
        self._defender.record_success(self._ip)
        self.context = SessionContext(
            self._account, self._ip, self._durable_uploads, self._limits, self._verdicts,
            self._request_refusals,
            quota=functools.partial(_current_quota, self._lookup, self._account),
            bandwidth=self._bandwidth)
        SESSIONS.inc()
        self._log_login(self._method, "ok", **({"key": self._key} if self._key else {}))
