"""``--only scale``: what more processes buy (issue 28, beyond one machine), and what bounds each
figure on this machine.

- The pipeline with 1, 2 and 4 workers: ``ssftp up`` alone, then with 1 and 3 ``ssftp worker``
  beside it on its data root, its Prefect server and the one clamd; the pipeline workload
  (``--pipeline-files`` x 64 KiB, upload end until all are in clean/) against raw clamd's
  CONTSCAN of the same files in the same round. On SQLite, Prefect's default, and on PostgreSQL
  (a throwaway cluster, testkit/postgres.py, given to ``ssftp up`` as
  ``PREFECT_API_DATABASE_CONNECTION_URL``; ``scanning.concurrentRuns: 4``, what ``auto`` gives
  ``up`` there and what a worker on a Prefect server it did not start must be told).
- SFTP: ``--concurrent-downloads`` clients each fetching a file of its own at once, from one
  ``ssftp serve`` directly, through HAProxy (send-proxy-v2) to that one, and through HAProxy
  to two on one data root (leastconn).

The worker counts alternate within a round (1, 2, 4, 1, 2, 4, ...), as the servers do in the
other workloads: workers are started and stopped between them, outside the timing. Each row
says where the machine's CPU went meanwhile (bench.cpu.CpuSplit) and what bound the figure.
Not in the default run: two ``ssftp up`` starts (one migrates a new PostgreSQL database) and a
dozen worker starts take minutes before anything is measured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.clients import Login
from bench.cpu import CpuSplit, bound, median_cores
from bench.results import Better, Row, Samples
from bench.servers import ACCOUNT_DIRECTORY, DOWNLOADER, UPLOADER, bench_config
from bench.workloads import (
    MB,
    MIB,
    RAW_CLAMD,
    PipelineRound,
    Side,
    Sizes,
    alternate,
    concurrent_round,
    pipeline_label,
    pipeline_round,
    served,
    write_file_set,
)
from ssftp.runtime.clamd_daemon import ClamdDaemon
from ssftp.runtime.prefect_server import is_healthy, is_prefect_server
from ssftp.scan.clamd import ClamdClient
from testkit.files import make_random_file
from testkit.haproxy import PROXY_SOURCE, haproxy
from testkit.openssh_server import free_port
from testkit.postgres import Postgres, PostgresError, postgres_cluster
from testkit.processes import process_tree
from testkit.sftp_client import ClientKey
from testkit.ssftp_process import SsftpProcess
from testkit.workers import start_worker, wait_until_sharing

WORKERS = (1, 2, 4)
SQLITE = "SQLite"
POSTGRESQL = "PostgreSQL"
# PostgreSQL's runs per lane: what ``auto`` gives ``ssftp up`` there.
POSTGRES_RUNS = 4
READY_TIMEOUT = 120.0

Say = Callable[[str], None]


def _cpus() -> int:
    return os.cpu_count() or 1


def _prefect_server(up: SsftpProcess) -> list[int]:
    """The Prefect server ``ssftp up`` started: a child process of its own."""
    found = []
    for pid in process_tree(up.pid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if is_prefect_server(argv.split("\0")):
                found.append(pid)
    return found


@dataclass
class Workers:
    """The ``ssftp worker`` processes beside one ``ssftp up``, on its data root and its Prefect
    server, started and stopped so that there are as many workers as asked (``up`` is one)."""

    workdir: Path
    config: Path
    up: SsftpProcess
    api_url: str
    extra: list[SsftpProcess] = field(default_factory=list)

    def resize(self, count: int) -> None:
        while len(self.extra) > count - 1:
            self.extra.pop().stop()
        while len(self.extra) < count - 1:
            self._wait_for_prefect()
            self.extra.append(start_worker(self.workdir, self.config, self.up.layout.root,
                                           f"w{len(self.extra) + 2}", self.api_url))
        wait_until_sharing(self.up.layout.workers, count, READY_TIMEOUT)

    def _wait_for_prefect(self) -> None:
        """``ssftp worker`` refuses to start when the Prefect server does not answer its
        health check within 2 s, which a server on SQLite may not right after a round."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not is_healthy(self.api_url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server at {self.api_url} did not answer "
                                   f"within {READY_TIMEOUT:.0f} s")
            time.sleep(0.1)

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self.extra]

    def stop(self) -> None:
        while self.extra:
            self.extra.pop().stop()


def _workers_label(count: int) -> str:
    return f"{count} worker" + ("s" if count > 1 else "")


def _pipeline_with_workers(database: str, env: dict[str, str], clamd: ClamdDaemon,
                           key: ClientKey, client: Path, workdir: Path, sizes: Sizes,
                           parts: dict[str, list[int]], say: Say) -> list[Row]:
    """The pipeline rounds with 1, 2 and 4 workers, alternating, on one ``ssftp up``."""
    root = workdir / f"scale-{database.lower()}"
    root.mkdir()
    config = root / "ssftp.yaml"
    config.write_text(bench_config(key.public_line, clamd_socket=clamd.socket,
                                   concurrent_runs=POSTGRES_RUNS if database == POSTGRESQL
                                   else None))
    raw_clamd = ClamdClient(clamd.address, timeout=600)
    names = set(write_file_set(client / "pipeline", sizes.pipeline_files,
                               sizes.pipeline_file_bytes))
    rounds: dict[int, list[PipelineRound]] = {count: [] for count in WORKERS}
    with contextlib.ExitStack() as stack:
        say(f"starting ssftp up on {database} (its Prefect server migrates a new database)")
        prefect_port = free_port()
        up = SsftpProcess.start("up", root, config, root / "data",
                                ("--prefect-port", str(prefect_port)), env=env)
        stack.callback(up.stop)
        workers = Workers(root, config, up, f"http://127.0.0.1:{prefect_port}/api")
        stack.callback(workers.stop)
        uploader = Login(up.port, UPLOADER, key.private_path)
        clean = up.layout.clean / ACCOUNT_DIRECTORY
        clean.mkdir(parents=True, exist_ok=True)
        for round_number in range(1, sizes.rounds + 1):
            for count in WORKERS:
                say(f"round {round_number}: {_workers_label(count)} on {database}")
                workers.resize(count)
                split = CpuSplit({"ssftp up": [up.pid], "Prefect server": _prefect_server(up),
                                  "ssftp worker": workers.pids, "clamd": [clamd.process.pid],
                                  **parts})
                rounds[count].append(pipeline_round(uploader, clean, up.layout.quarantine,
                                                    raw_clamd, client, names, split))
    shutil.rmtree(client / "pipeline")
    one = Samples("s", [each.after_upload for each in rounds[1]])
    rows = []
    for count, results in rounds.items():
        figure = Samples("s", [each.after_upload for each in results])
        cores = median_cores([each.cores for each in results])
        note = "" if count == 1 else f"{one.median / figure.median:.2f}x the pace of 1 worker"
        rows.append(Row(f"{pipeline_label(sizes)}, {_workers_label(count)}, {database}: "
                        "upload end -> all in clean/", Better.LOWER, figure, RAW_CLAMD,
                        Samples("s", [each.raw for each in results]), note=note, cpu=cores,
                        bound=bound(cores, _cpus())))
    return rows


def pipeline_rows(clamd: ClamdDaemon, workdir: Path, key: ClientKey, client: Path,
                  sizes: Sizes, stack: contextlib.ExitStack, say: Say) -> list[Row]:
    """The pipeline with 1, 2 and 4 workers on SQLite, then on PostgreSQL."""
    rows = _pipeline_with_workers(SQLITE, {}, clamd, key, client, workdir, sizes, {}, say)
    say("starting PostgreSQL")
    try:
        database: Postgres = stack.enter_context(postgres_cluster())
    except PostgresError as exc:
        say(f"the pipeline on PostgreSQL skipped: {exc}")
        return rows
    return rows + _pipeline_with_workers(
        POSTGRESQL, {"PREFECT_API_DATABASE_CONNECTION_URL": database.url}, clamd, key, client,
        workdir, sizes, {"PostgreSQL": [database.pid]}, say)


def sftp_rows(workdir: Path, key: ClientKey, client: Path, sizes: Sizes,
              stack: contextlib.ExitStack, say: Say) -> list[Row]:
    """Concurrent downloads from one ``ssftp serve``, directly and through HAProxy, and
    through HAProxy from two on one data root."""
    root = workdir / "scale-sftp"
    root.mkdir()
    config = root / "ssftp.yaml"
    config.write_text(bench_config(key.public_line, trusted_proxy=PROXY_SOURCE))
    say("starting 2 ssftp serve on one data root, and HAProxy")
    serves = []
    for index in (1, 2):
        serve = SsftpProcess.start("serve", root, config, root / "data",
                                   output=root / f"serve-{index}.out")
        stack.callback(serve.stop)
        serves.append(serve)
    one, two = free_port(), free_port()
    balancer = stack.enter_context(haproxy(root, {one: [serves[0].port],
                                                  two: [serve.port for serve in serves]}))
    directory = serves[0].layout.clean / ACCOUNT_DIRECTORY

    def side(name: str, port: int) -> Side:
        return Side(name, balancer.pid, Login(port, UPLOADER, key.private_path),
                    Login(port, DOWNLOADER, key.private_path), directory, directory)

    direct, through_one, through_two = (side("1 serve, direct", serves[0].port),
                                        side("HAProxy -> 1 serve", one),
                                        side("HAProxy -> 2 serves", two))
    count, size = sizes.concurrent_downloads, sizes.concurrent_file_bytes
    sources = {f"scale-{index}.bin": make_random_file(client / f"scale-{index}.bin", size)
               for index in range(count)}
    split = CpuSplit({"ssftp serve 1": [serves[0].pid], "ssftp serve 2": [serves[1].pid],
                      "HAProxy": [balancer.pid]})

    def download(each: Side) -> tuple[float, dict[str, float]]:
        before = split.read()
        seconds = concurrent_round(each, list(sources), client, size)
        return count * size / seconds / MB, split.cores_since(before)

    say(f"workload: {count} downloads at once through HAProxy to 1 and 2 ssftp serve")
    with served([direct], sources):
        measured = alternate([direct, through_one, through_two], sizes.rounds, download)
    for source in sources.values():
        source.unlink()

    def figures(each: Side) -> Samples:
        return Samples("MB/s", [value for value, _ in measured[each.name]])

    def row(figure: Side, reference: Side | None) -> Row:
        cores = median_cores([cpu for _, cpu in measured[figure.name]])
        return Row(f"download {count}x{size / MIB:g} MiB concurrently, {figure.name}",
                   Better.HIGHER, figures(figure), reference.name if reference else None,
                   figures(reference) if reference else None,
                   note="aggregate, from the start of all clients until the last has ended",
                   cpu=cores, bound=bound(cores, _cpus()))

    return [row(direct, None), row(through_one, direct), row(through_two, through_one)]
