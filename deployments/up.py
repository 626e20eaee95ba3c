"""``ssftp up``: the whole gateway in one process tree, for one machine.

Order of start: the Prefect server (its own, or the one it is told to use); while its own
comes up (some 4 s, in a process of its own), the worker's modules load and clamd starts
(unless one is configured); once it answers, the SFTP server, then the scan worker. The
worker runs on its own thread and event loop, so scanning and Prefect's bookkeeping never
hold up SFTP clients. The clamd it starts is supervised (started again when it dies); it and
the Prefect server die with ``up``, and a start stops what a SIGKILLed ``up`` left
(``ssftp.runtime.pid_files``).

SIGINT/SIGTERM stops all in reverse, the Prefect server last: the SFTP listener closes, the
worker is given the time left to finish its scans, Prefect's log and event workers are
flushed while the API still answers, then clamd and the server stop. The whole stop is
bounded (``StopDeadline``): past it, the process says what still ran and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

from deployments.prefect_flush import flush_prefect_workers
from ssftp.addresses import Address
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from ssftp.logs import configure_logging
from ssftp.runtime.clamd_daemon import ClamdDaemon, supervise
from ssftp.runtime.listener import Check, metrics_listening, up_or_down
from ssftp.runtime.prefect_server import (
    OFFLINE_ENV,
    PrefectServer,
    is_healthy,
    start_prefect_server,
)
from ssftp.runtime.stop import StopDeadline, run_until_stopped
from ssftp.scan.database import seed

if TYPE_CHECKING:
    from deployments.worker import WorkerThread
    from server.app import Gateway

DEFAULT_PREFECT_PORT = 4200
def _connect_hint(store: ConfigStore, host: str, port: int) -> str:
    staging = store.current.loaded.config.users.staging_dir
    user = staging[0].auth.username if staging else "<user>"
    return f"sftp -P {port} {user}@{host}"


def _health_checks(gateway: Gateway, worker: WorkerThread,
                   prefect: PrefectServer) -> dict[str, Check]:
    return {"sftp": lambda: up_or_down(gateway.listening), **worker.engine_checks(),
            "signatures": worker.signatures_status,
            "prefect": lambda: up_or_down(is_healthy(prefect.api_url))}


def _banner(store: ConfigStore, gateway: Gateway, prefect: PrefectServer,
            metrics_url: str | None) -> str:
    """What a newcomer needs next: how to connect, where to look, which file to edit."""
    lines = ["", "ssftp is up.",
             f"  upload:    {_connect_hint(store, gateway.host, gateway.port)}",
             f"  Prefect:   {prefect.describe()}",
             f"  infected:  {prefect.runs_url('infected')} (alerts: `ssftp automations "
             "install --webhook URL`)"]
    if metrics_url is not None:
        lines.append(f"  metrics:   {metrics_url} (and /healthz)")
    lines += [f"  config:    {store.path} (changes apply while ssftp runs)",
              f"  data root: {store.layout.root}", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


async def run_up(store: ConfigStore, *, host: str | None, port: int | None,
                 prefect_port: int = DEFAULT_PREFECT_PORT,
                 prefect_url: str | None = None, metrics: Address | None = None) -> None:
    from server.app import start_service

    layout: DataLayout = store.layout
    config = store.current.loaded.config
    configure_logging(store.current.loaded.config.log_dirs(layout))
    os.environ.update({key: os.environ.get(key, value) for key, value in OFFLINE_ENV.items()})
    os.environ.setdefault("PREFECT_HOME", str(layout.system / "prefect"))
    prefect: PrefectServer = await asyncio.to_thread(
        start_prefect_server, layout.system / "prefect", prefect_port, url=prefect_url,
        pid_file=layout.prefect_pid_file)
    os.environ["PREFECT_API_URL"] = prefect.api_url
    # Only now: the worker's modules load Prefect's flow machinery, which reads the API URL
    # once, as it loads. The server need not answer yet: they load while it starts.
    from deployments.worker import WORKER_STOP_SECONDS, WorkerThread, check_alive

    clamd = None
    supervisor = None
    service = None
    worker = None
    listening = contextlib.ExitStack()  # /metrics and /healthz, once every part is up
    try:
        if config.enable_virus_scan and config.clamav.enabled and not config.clamav.address:
            database = await asyncio.to_thread(seed, layout.signatures,
                                               official=config.clamav.signatures.official)
            clamd = await asyncio.to_thread(ClamdDaemon.start, layout.clamd, database=database,
                                            max_file_size=config.clamav.max_file_size,
                                            pid_file=layout.clamd_pid_file)
            supervisor = asyncio.create_task(supervise(clamd))
        await asyncio.to_thread(prefect.wait_until_ready)
        service = await start_service(store, host=host, port=port)
        worker = WorkerThread(store, clamd, database=prefect.database)
        worker.start()
        gateway = service.gateway
        metrics_url = listening.enter_context(
            metrics_listening(metrics, _health_checks(gateway, worker, prefect)))
        stopped = asyncio.create_task(run_until_stopped(lambda: store.ask("SIGHUP")))
        await asyncio.sleep(0)  # its handlers take SIGINT before the banner invites a Ctrl-C
        print(_banner(store, gateway, prefect, metrics_url), flush=True)
        while not stopped.done():
            await asyncio.wait([stopped], timeout=1)
            check_alive(worker, stopped)
    finally:
        deadline = StopDeadline()
        deadline.arm("closing the SFTP server")
        listening.close()
        if service is not None:
            await service.stop()
        if worker is not None:
            deadline.step("stopping the scan worker")
            await asyncio.to_thread(worker.stop, WORKER_STOP_SECONDS)
        deadline.step("flushing Prefect's log and event workers")
        await asyncio.to_thread(flush_prefect_workers)
        deadline.step("stopping clamd")
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if clamd is not None:
            await asyncio.to_thread(clamd.stop)
        deadline.step("stopping the Prefect server")
        await asyncio.to_thread(prefect.stop)
        deadline.step("exiting (Python's exit handlers)")
