"""``ssftp worker`` processes beside an ``ssftp up``, on its data root and its Prefect server:
started as an operator adds one, and waited for until all the live workers know each other."""

from __future__ import annotations

import time
from pathlib import Path

from ssftp.scan.workers import live_workers
from testkit.ssftp_process import SsftpProcess

READY_TIMEOUT = 120.0


def start_worker(workdir: Path, config: Path, data: Path, name: str,
                 api_url: str) -> SsftpProcess:
    """``ssftp worker --name <name>`` on ``data`` and the Prefect server at ``api_url``, its
    console in ``workdir/worker-<name>.out``."""
    return SsftpProcess.start("worker", workdir, config, data, ("--name", name),
                              env={"PREFECT_API_URL": api_url},
                              output=workdir / f"worker-{name}.out")


def wait_until_sharing(directory: Path, count: int, timeout: float = READY_TIMEOUT) -> None:
    """Until exactly ``count`` workers are live (heartbeats in ``directory``, the data root's
    ``system/workers``) and each has beaten since all were: then each knows the others and
    batches its share only (ssftp.scan.workers), as it would in a deployment that has run a
    while."""
    deadline = time.monotonic() + timeout
    all_live_since: float | None = None
    while True:
        now = time.time()
        beats = live_workers(directory, now)
        if len(beats) != count:
            all_live_since = None
        elif all_live_since is None:
            all_live_since = now
        elif all(beaten > all_live_since for beaten in beats.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sorted(beats)} are the live workers under {directory}, "
                               f"not {count} that know each other, after {timeout:.0f} s")
        time.sleep(0.05)
