"""The fixtures every tier may ask for, each started only for the tests that ask for it.

The suite is split by cost (tests/README.md): ``unit/`` (no daemon: its conftest refuses the
fixtures below that start one), ``integration/`` (real clamd, sshd, the Prefect test harness,
the SFTP server in a thread) and ``e2e/`` (ssftp's own processes, real client programs,
Docker). Helpers that test modules share are in ``tests/support/`` and ``testkit/``: test
modules never import each other.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssftp.config.schema import SsftpConfig
from ssftp.layout import DataLayout
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import TEST_SIGNATURES, seed
from ssftp.scan.owners import StagingOwners
from testkit.sftp_client import make_client_key
from tests.support.config import Keys, gateway_config, write_config
from tests.support.gateway import ServerThread
from tests.support.logs import logging_into
from tests.support.scanning import CLAMD_MAX_FILE_SIZE
from tests.support.webhooks import WebhookReceiver

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("client-keys")
    return Keys(
        partner=make_client_key(directory, "partner"),
        consumer=make_client_key(directory, "consumer", "ecdsa-sha2-nistp256"),
        stranger=make_client_key(directory, "stranger"),
        partner_rsa=make_client_key(directory, "partner_rsa", "ssh-rsa"),
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[ServerThread]:
    """One running server per test module, with the standard accounts."""
    root = tmp_path_factory.mktemp("gateway")
    config = write_config(root / "ssftp.yaml", gateway_config(keys))
    server = ServerThread(config, root / "data")
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A client-side working directory for files to put and get."""
    path = tmp_path / "client"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdDaemon]:
    """One real clamd per test session (Unix socket), with the offline EICAR signatures."""
    daemon = ClamdDaemon.start(tmp_path_factory.mktemp("clamd"),
                               max_file_size=CLAMD_MAX_FILE_SIZE, database=TEST_SIGNATURES)
    yield daemon
    daemon.stop()


@pytest.fixture
def own_clamd(layout: DataLayout) -> Iterator[ClamdDaemon]:
    """The clamd of ``ssftp up`` for ``layout``: on its own seeded database (system/clamav),
    listening in system/clamd; for tests that update its signatures."""
    daemon = ClamdDaemon.start(layout.clamd, database=seed(layout.signatures, official=False))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """Prefect's test harness (a real server on a temporary SQLite DB), once per session.

    Yields the API URL. Its settings live in a context variable; threads that need them (the
    scan worker's) are started with a copy of the caller's context.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


# --- scanning: the accounts a Scanner attributes files to, and its clamd client -------------


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    """A fresh data root (every area created) in the test's own directory."""
    return DataLayout.at(tmp_path / "data").create()



def config_dict() -> dict:
    """Two staging accounts and a downloader, for tests that build a Scanner."""
    return {
        "users": {
            "stagingDir": [
                {"directory": "partner-a", "auth": {"username": "partner-a", "password": "pw-a"}},
                {"directory": "partner-b", "auth": {"username": "partner-b", "password": "pw-b"}},
            ],
        },
        "sftpClientDownloaders": [
            {"name": "pull-x", "host": "sftp.example.com", "username": "remote",
             "password": "pw-r", "localStagingDirectory": "pulled"},
        ],
    }


@pytest.fixture
def owners() -> StagingOwners:
    return StagingOwners(SsftpConfig.model_validate(config_dict()))


@pytest.fixture
def client(clamd) -> ClamdClient:
    return ClamdClient(clamd.address, timeout=30, max_file_size=CLAMD_MAX_FILE_SIZE)


@pytest.fixture
def audit_log(layout: DataLayout) -> Iterator[Path]:
    """The audit log of ``layout``."""
    with logging_into(layout.log) as path:
        yield path


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver of the test's own (tests/support/webhooks.py)."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts by hand; killed at the end whatever happened."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
