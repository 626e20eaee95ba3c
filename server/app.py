"""Starting and running the SFTP server: ``ssftp serve`` and the server part of ``ssftp up``.

:func:`start_gateway` is the whole server given an account lookup (tests and portable mode call
it directly); :func:`serve` adds what a long-running process needs: the config file with hot
reload, logs, and a clean stop on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from server.algorithms import modern_host_keypairs, server_algorithm_options
from server.bandwidth import Throttles
from server.defender import Defender
from server.descriptors import process_budget
from server.host_keys import load_host_keys
from server.in_flight import ProcessBytes
from server.log_summary import REFUSAL_LOG_SECONDS, LogSummary
from server.proxy_listener import ProxyListener
from server.quota import account_tallies
from server.ssh_server import AccountLookup, AccountSSHServer, Occupancy
from server.verdict_wait import Destinations, VerdictWatch
from ssftp.addresses import Address
from ssftp.bans import SharedBans
from ssftp.config.reload import ActiveConfig, ConfigStore, log_warnings
from ssftp.config.schema import LimitsSettings
from ssftp.errors import ListenError
from ssftp.layout import DataLayout, remove_stale_partial_uploads, remove_stale_temp_files
from ssftp.logs import APP, configure_logging, log_event
from ssftp.metrics import QUOTAS
from ssftp.runtime.listener import metrics_listening, up_or_down
from ssftp.runtime.stop import run_until_stopped

logger = logging.getLogger(APP)

SERVER_VERSION = "ssftp"
# An upload temp file untouched this long belongs to no live session (any instance).
STALE_TEMP_SECONDS = 24 * 3600
# How often a running server looks for them again: a crash of another instance sharing the data
# root (or of a session's process) leaves them while this one keeps running for months.
STALE_TEMP_SWEEP_SECONDS = 3600


@dataclass
class Gateway:
    acceptor: asyncssh.SSHAcceptor
    host: str
    host_keys: list[asyncssh.SSHKey]

    @property
    def port(self) -> int:
        return int(self.acceptor.get_port())

    @property
    def listening(self) -> bool:
        """True while the listener accepts connections (read from /healthz's thread: one
        flag of asyncio's server, no call into the event loop)."""
        return bool(self.acceptor.is_serving())

    async def close(self) -> None:
        self.acceptor.close()
        await self.acceptor.wait_closed()


async def start_gateway(
    *,
    lookup: AccountLookup,
    layout: DataLayout,
    host: str,
    port: int,
    defender: Defender | None = None,
    durable_uploads: Callable[[], bool] = lambda: True,
    limits: Callable[[], LimitsSettings] = LimitsSettings,
    refusal_log_seconds: float = REFUSAL_LOG_SECONDS,
    verdicts: VerdictWatch | None = None,
) -> Gateway:
    """Listen for SFTP clients; ``port=0`` picks a free port (see ``Gateway.port``).

    ``durable_uploads`` is asked at each connection and ``limits`` at each check (connection,
    login, channel, OPEN), so that a config reload applies to the next one; the login grace
    time is asyncssh's, set here once. The first gateway of the process raises its descriptor
    limit and sets the budget all its sessions share (server.descriptors). A refused
    connection is logged at most once per ``refusal_log_seconds`` per limit and address, a
    refused request once per operation and reason of its connection. The channel window
    (``limits.channelWindowBytes``) is asyncssh's, set here once too, and so is the bytes in
    flight of all connections together (``limits.maxBufferedBytes``, server.in_flight).
    ``verdicts``: what the close of an upload waits for (server.verdict_wait), if anything.

    Raises :class:`ListenError` when the address cannot be had (in use, privileged port, an
    address not on this machine)."""
    host_keys = load_host_keys(layout.system)
    defender = defender or Defender()
    occupancy = Occupancy()
    throttles = Throttles()  # the accounts' bandwidth, shared by their connections
    refusals = LogSummary(refusal_log_seconds)
    login_grace, window = limits().login_grace_seconds, limits().channel_window_bytes
    in_flight = ProcessBytes(limits().max_buffered_bytes)
    process_budget()  # raises the descriptor limit before the first connection
    QUOTAS.read_from(account_tallies().figures)
    try:
        acceptor = await asyncssh.listen(
            host,
            port,
            server_factory=lambda: AccountSSHServer(lookup, defender, durable_uploads(),
                                                    limits, occupancy, refusals, in_flight,
                                                    login_grace, throttles, verdicts),
            server_host_keys=modern_host_keypairs(host_keys),
            line_editor=False,  # SFTP only: the session's channel must be asyncssh's own
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            gss_host=None,
            server_version=SERVER_VERSION,
            # The listener itself (server.proxy_listener): reads a trusted proxy's PROXY header.
            tunnel=ProxyListener(lambda: limits().proxies, refusals),
            login_timeout=login_grace,
            keepalive_interval=60,
            keepalive_count_max=3,
            window=window,
            **server_algorithm_options(),
        )
    except OSError as exc:
        # asyncio's text is "error while attempting to bind on address (...): <reason>".
        reason = (exc.strerror or str(exc)).rsplit(": ", 1)[-1]
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
    return Gateway(acceptor, host, host_keys)


def log_listening(gateway: Gateway) -> None:
    """The host keys by type (``ssh-ed25519 SHA256:...``): a client negotiates one of them,
    and a fingerprint pinned without its type was another key's (a newcomer pinned the
    first, ed25519, and the downloader negotiated ssh-rsa)."""
    log_event(logger, "listening", host=gateway.host, port=gateway.port,
              host_keys=[f"{key.get_algorithm()} {key.get_fingerprint()}"
                         for key in gateway.host_keys],
              **process_budget().figures())


def _apply_defender_settings(defender: Defender, active: ActiveConfig) -> None:
    settings = active.loaded.config.defender
    defender.max_failures = settings.max_failures
    defender.window_seconds = settings.window_seconds
    defender.ban_seconds = settings.ban_seconds


def _remove_stale_temp_files(layout: DataLayout, partial_ttl: float, *,
                             now: float | None = None) -> None:
    """Remove ssftp's stale temp files, and the uploads in progress nobody finished within
    ``partialUploadTtlSeconds`` (``partial_ttl``): kept for a resume, or a client's temp name.
    Their age is counted to ``now`` (the clock, unless a test gives one)."""
    for area in (layout.staging, layout.clean):
        for path in remove_stale_temp_files(area, STALE_TEMP_SECONDS, now=now):
            log_event(logger, "removed stale upload temp file", path=str(path))
        for path in remove_stale_partial_uploads(area, partial_ttl, now=now,
                                                 client_temp_names=area == layout.staging):
            log_event(logger, "removed unfinished upload", path=str(path),
                      ttl_seconds=partial_ttl)


async def _sweep_stale_temp_files(layout: DataLayout, interval: float,
                                  partial_ttl: Callable[[], float]) -> None:
    """Remove stale temp files every ``interval`` seconds, in a thread: walking a large tree
    (or a slow share) must not stall the sessions on the event loop."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(_remove_stale_temp_files, layout, partial_ttl())
        except OSError as exc:  # a vanished or unreadable area: try again next time
            log_event(logger, "stale temp file sweep failed", logging.WARNING,
                      error=str(exc))


@dataclass
class Service:
    """A started ``ssftp serve``: the gateway plus its background tasks (the config watcher,
    the stale temp file sweep) and its defender."""

    store: ConfigStore
    gateway: Gateway
    tasks: list[asyncio.Task[None]]
    defender: Defender

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.gateway.close()
        await self.defender.close()
        log_event(logger, "stopped")


async def start_service(store: ConfigStore, *, host: str | None, port: int | None,
                        temp_sweep_seconds: float = STALE_TEMP_SWEEP_SECONDS,
                        refusal_log_seconds: float = REFUSAL_LOG_SECONDS) -> Service:
    """Start the SFTP server for a config store, with hot reload of its file and a periodic
    sweep of stale upload temp files (``temp_sweep_seconds`` apart); see start_gateway for
    ``refusal_log_seconds``."""
    layout = store.layout
    config = store.current.loaded.config
    configure_logging(store.current.loaded.config.log_dirs(layout))
    log_warnings(store.current.loaded)
    # The data root's bans, shared with its other servers (a file: opened off the loop).
    bans = await asyncio.to_thread(SharedBans, layout.bans)
    defender = Defender(store=bans, server=f"{config.instance_name} pid {os.getpid()}")
    _apply_defender_settings(defender, store.current)
    store.on_change(lambda active: _apply_defender_settings(defender, active))
    for account in store.current.accounts.values():
        account.root.mkdir(parents=True, exist_ok=True)
    def partial_ttl() -> float:  # asked at each sweep: a reload applies to the next one
        return store.current.loaded.config.partial_upload_ttl_seconds

    _remove_stale_temp_files(layout, partial_ttl())

    gateway = await start_gateway(
        lookup=lambda username: store.current.accounts.get(username),
        layout=layout,
        host=host or config.sftp_host,
        port=config.sftp_port if port is None else port,
        defender=defender,
        durable_uploads=lambda: store.current.loaded.config.fsync_uploads,
        limits=lambda: store.current.loaded.config.limits,
        refusal_log_seconds=refusal_log_seconds,
        verdicts=VerdictWatch(
            Destinations.of(layout), lambda: store.current.loaded.config.scanning.verdict_on_close),
    )
    log_listening(gateway)
    return Service(store, gateway, [
        asyncio.create_task(store.watch()),
        asyncio.create_task(_sweep_stale_temp_files(layout, temp_sweep_seconds, partial_ttl)),
    ], defender)


async def serve(store: ConfigStore, *, host: str | None, port: int | None,
                metrics: Address | None = None) -> None:
    """Run the SFTP server for a config store until SIGINT/SIGTERM, with ``/metrics`` and
    ``/healthz`` on ``metrics`` when given."""
    service = await start_service(store, host=host, port=port)
    try:
        with metrics_listening(metrics, {"sftp": lambda: up_or_down(service.gateway.listening)}):
            await run_until_stopped(lambda: store.ask("SIGHUP"))
    finally:
        await service.stop()
