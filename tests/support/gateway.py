"""The SFTP gateway in a thread: ``ssftp serve`` on 127.0.0.1 with its own event loop, so that a
test can drive blocking clients (``sftp`` subprocesses, paramiko) against it from its body."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from server.app import STALE_TEMP_SWEEP_SECONDS, Service, start_service
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from ssftp.logs import configure_logging
from ssftp.runtime.loop_thread import LoopThread


class ServerThread:
    """``ssftp serve`` for one config file, on a free port, until ``stop()``."""

    def __init__(self, config_path: Path, data_dir: Path, *,
                 temp_sweep_seconds: float = STALE_TEMP_SWEEP_SECONDS) -> None:
        """``temp_sweep_seconds``: how often stale temp files and unfinished uploads are
        swept (an hour, as in production, unless a test needs to see the sweep)."""
        self.config_path = config_path
        self.temp_sweep_seconds = temp_sweep_seconds
        self.layout = DataLayout.at(data_dir).create()
        self._host = LoopThread("ssftp-test-server")
        self.service: Service = self.call(self._start())

    async def _start(self) -> Service:
        store = ConfigStore.open(self.config_path, self.layout)
        return await start_service(store, host="127.0.0.1", port=0,
                                   temp_sweep_seconds=self.temp_sweep_seconds)

    def call(self, coroutine):
        return self._host.call(coroutine)

    @property
    def port(self) -> int:
        return self.service.gateway.port

    @property
    def store(self) -> ConfigStore:
        return self.service.store

    def stop(self) -> None:
        self.call(self.service.stop())
        self._host.stop(timeout=10)


def unique_name() -> str:
    """A short random token, so tests sharing one server never touch each other's files."""
    return uuid.uuid4().hex[:12]


S = TypeVar("S", bound=ServerThread)


@contextlib.contextmanager
def beside(server: S, gateway: ServerThread) -> Iterator[S]:
    """A test's own server next to its module's gateway: stopped afterwards, and logging
    (process-wide: the server pointed it at its own log dir) sent back to the gateway's."""
    try:
        yield server
    finally:
        server.stop()
        configure_logging([gateway.layout.log])
