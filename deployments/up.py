"""``ssftp up``: the whole gateway in one process tree, for one machine.

Order of start: the Prefect server (found or started), clamd (unless one is configured), the
SFTP server, then the scan worker. The worker runs on its own thread and event loop, so
scanning and Prefect's bookkeeping never hold up SFTP clients. Ctrl-C stops all in reverse.
The clamd it starts is supervised (started again when it dies); it and the Prefect server die
with ``up``, and a start stops what a SIGKILLed ``up`` left (``ssftp.processes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from dataclasses import dataclass, field

from deployments.prefect_server import OFFLINE_ENV, PrefectServer, ensure_prefect_server
from ssftp.clamd_daemon import ClamdDaemon, supervise
from ssftp.config.reload import ConfigStore
from ssftp.errors import WorkerDiedError
from ssftp.layout import DataLayout
from ssftp.logs import configure_logging, log_dirs
from ssftp.processes import run_until_stopped

DEFAULT_PREFECT_PORT = 4200


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

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=30)


def _connect_hint(store: ConfigStore, host: str, port: int) -> str:
    staging = store.current.loaded.config.users.staging_dir
    user = staging[0].auth.username if staging else "<user>"
    return f"sftp -P {port} {user}@{host}"


async def run_up(store: ConfigStore, *, host: str | None, port: int | None,
                 prefect_port: int = DEFAULT_PREFECT_PORT) -> None:
    from server.app import start_service

    layout: DataLayout = store.layout
    config = store.current.loaded.config
    configure_logging(log_dirs(layout, store.current.loaded.config))
    os.environ.update({key: os.environ.get(key, value) for key, value in OFFLINE_ENV.items()})
    os.environ.setdefault("PREFECT_HOME", str(layout.system / "prefect"))
    prefect: PrefectServer = await asyncio.to_thread(
        ensure_prefect_server, layout.system / "prefect", prefect_port,
        pid_file=layout.prefect_pid_file)
    os.environ["PREFECT_API_URL"] = prefect.api_url
    clamd = None
    supervisor = None
    service = None
    worker = None
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
        print(f"\nssftp is up.\n  upload:    {_connect_hint(store, gateway.host, gateway.port)}\n"
              f"  Prefect:   {prefect.ui_url}\n  data root: {layout.root}\n"
              "Ctrl-C stops everything.\n", flush=True)
        stopped = asyncio.create_task(run_until_stopped())
        while not stopped.done():
            await asyncio.wait([stopped], timeout=1)
            if not worker.alive:
                # Uploads would pile up unscanned without anyone noticing: stop loudly.
                stopped.cancel()
                raise WorkerDiedError(f"the scan worker stopped: {worker.error!r}")
    finally:
        if worker is not None:
            worker.stop()
        if service is not None:
            await service.stop()
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if clamd is not None:
            clamd.stop()
        prefect.stop()
