"""``ssftp up``: the whole gateway in one process tree, for one machine.

Order of start: the Prefect server (its own, or the one it is told to use), clamd (unless one
is configured), the SFTP server, then the scan worker. The worker runs on its own thread and
event loop, so scanning and Prefect's bookkeeping never hold up SFTP clients. The clamd it
starts is supervised (started again when it dies); it and the Prefect server die with ``up``,
and a start stops what a SIGKILLed ``up`` left (``ssftp.processes``).

SIGINT/SIGTERM stops all in reverse, the Prefect server last: the SFTP listener closes, the
worker is given the time left to finish its scans, Prefect's log and event workers are
flushed while the API still answers, then clamd and the server stop. The whole stop is
bounded (``StopDeadline``): past it, the process says what still ran and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deployments.prefect_server import (
    OFFLINE_ENV,
    PrefectServer,
    ensure_prefect_server,
    flush_prefect_workers,
    is_healthy,
)
from ssftp.clamd_daemon import ClamdDaemon, supervise
from ssftp.config.reload import ConfigStore
from ssftp.errors import WorkerDiedError
from ssftp.health import Address, Check, Status, metrics_listening, up_or_down
from ssftp.layout import DataLayout
from ssftp.logs import configure_logging, log_dirs
from ssftp.processes import StopDeadline, run_until_stopped

if TYPE_CHECKING:
    from deployments.worker import ScanWorker
    from server.app import Gateway

DEFAULT_PREFECT_PORT = 4200
# The worker's part of the stop's budget (``STOP_SECONDS`` in all) for its scans and
# notifications; then Prefect's workers are flushed (``FLUSH_SECONDS`` each), clamd stops,
# and the Prefect server (``SERVER_STOP_SECONDS``).
WORKER_STOP_SECONDS = 5.0


@dataclass
class WorkerThread:
    """A scan worker on its own thread and event loop."""

    store: ConfigStore
    clamd: ClamdDaemon | None
    _thread: threading.Thread = field(init=False)
    _loop: asyncio.AbstractEventLoop | None = field(init=False, default=None)
    _task: asyncio.Task[None] | None = field(init=False, default=None)
    _ready: threading.Event = field(init=False, default_factory=threading.Event)
    error: BaseException | None = field(init=False, default=None)
    scan_worker: ScanWorker | None = field(init=False, default=None)

    def start(self) -> None:
        # The caller's context goes along: Prefect keeps its settings (the API URL) there.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(asyncio.run, self._main()),
                                        name="ssftp-scan-worker", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error

    async def _main(self) -> None:
        from deployments.worker import ScanWorker

        self._loop = asyncio.get_running_loop()
        try:
            worker = ScanWorker(self.store, self.clamd.address if self.clamd else None)
            self.scan_worker = worker
            ready = asyncio.Event()
            self._task = asyncio.create_task(worker.run(ready))
            await asyncio.wait([self._task, asyncio.create_task(ready.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except BaseException as exc:
                self.error = exc

    def clamd_status(self) -> Status:
        """/healthz's clamd check, on the clamd the worker scans with now."""
        assert self.scan_worker is not None  # set before start() returns
        return self.scan_worker.clamd_status()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        """Cancel the worker and wait up to ``timeout`` for its thread (scans under way
        finish their file, notifications in flight get a moment: ``ScanWorker.run``)."""
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=timeout)


def _connect_hint(store: ConfigStore, host: str, port: int) -> str:
    staging = store.current.loaded.config.users.staging_dir
    user = staging[0].auth.username if staging else "<user>"
    return f"sftp -P {port} {user}@{host}"


def _health_checks(gateway: Gateway, worker: WorkerThread,
                   prefect: PrefectServer) -> dict[str, Check]:
    return {"sftp": lambda: up_or_down(gateway.listening), "clamd": worker.clamd_status,
            "prefect": lambda: up_or_down(is_healthy(prefect.api_url))}


async def run_up(store: ConfigStore, *, host: str | None, port: int | None,
                 prefect_port: int = DEFAULT_PREFECT_PORT,
                 prefect_url: str | None = None, metrics: Address | None = None) -> None:
    from server.app import start_service

    layout: DataLayout = store.layout
    config = store.current.loaded.config
    configure_logging(log_dirs(layout, store.current.loaded.config))
    os.environ.update({key: os.environ.get(key, value) for key, value in OFFLINE_ENV.items()})
    os.environ.setdefault("PREFECT_HOME", str(layout.system / "prefect"))
    prefect: PrefectServer = await asyncio.to_thread(
        ensure_prefect_server, layout.system / "prefect", prefect_port, url=prefect_url,
        pid_file=layout.prefect_pid_file)
    os.environ["PREFECT_API_URL"] = prefect.api_url
    clamd = None
    supervisor = None
    service = None
    worker = None
    listening = contextlib.ExitStack()  # /metrics and /healthz, once every part is up
    try:
        if config.enable_virus_scan and not config.clamav.address:
            clamd = await asyncio.to_thread(ClamdDaemon.start, layout.clamd,
                                            max_file_size=config.clamav.max_file_size,
                                            pid_file=layout.clamd_pid_file)
            supervisor = asyncio.create_task(supervise(clamd))
        service = await start_service(store, host=host, port=port)
        worker = WorkerThread(store, clamd)
        worker.start()
        gateway = service.gateway
        listening.enter_context(metrics_listening(metrics,
                                                  _health_checks(gateway, worker, prefect)))
        print(f"\nssftp is up.\n  upload:    {_connect_hint(store, gateway.host, gateway.port)}\n"
              f"  Prefect:   {prefect.describe()}\n  data root: {layout.root}\n"
              "Ctrl-C stops everything.\n", flush=True)
        stopped = asyncio.create_task(run_until_stopped())
        while not stopped.done():
            await asyncio.wait([stopped], timeout=1)
            if not worker.alive:
                # Uploads would pile up unscanned without anyone noticing: stop loudly.
                stopped.cancel()
                raise WorkerDiedError(f"the scan worker stopped: {worker.error!r}")
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
