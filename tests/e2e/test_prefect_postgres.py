"""``ssftp up`` on PostgreSQL: the Prefect server it starts takes the database of
``PREFECT_API_DATABASE_CONNECTION_URL`` (a throwaway cluster, testkit/postgres.py), and
scan runs overlap there (``scanning.concurrentRuns: auto`` is 4), each file still scanned once;
and beyond one machine (issue 28): two more ``ssftp worker`` and two ``ssftp serve`` behind
HAProxy on its data root and its Prefect server, one worker killed mid-run.

One PostgreSQL and one ``ssftp up`` for the module: Prefect migrating a new database takes
most of its time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ssftp.layout import DataLayout
from ssftp.scan.claims import process_owner, sub_path_of
from ssftp.scan.workers import live_workers, worker_tag
from testkit.files import EICAR
from testkit.haproxy import PROXY_SOURCE, haproxy
from testkit.openssh_server import free_port
from testkit.postgres import postgres_cluster
from testkit.sftp_client import SftpResult, run_sftp
from testkit.ssftp_process import SsftpProcess
from testkit.workers import start_worker, wait_until_sharing
from tests.support.cli import child_env
from tests.support.logs import json_lines
from tests.support.up import (
    ACCOUNT_DIR,
    PARTNER,
    PARTNER_PW,
    Up,
    up_config,
    up_for_module,
    verdict_record,
)
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with postgres_cluster() as database, up_for_module(
            tmp_path_factory.mktemp("up-postgres"),
            child_env(PREFECT_API_DATABASE_CONNECTION_URL=database.url)) as instance:
        yield instance


def scan_runs(up: Up) -> list[dict[str, Any]]:
    response = httpx.post(f"{up.api}/flow_runs/filter", timeout=30,
                          json={"flows": {"name": {"any_": ["scan"]}}, "limit": 50})
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return runs


def running(up: Up) -> list[dict[str, Any]]:
    return [run for run in scan_runs(up) if run["state_type"] == "RUNNING"]


def completed(up: Up, count: int) -> list[dict[str, Any]] | None:
    runs = [run for run in scan_runs(up) if run["state_type"] == "COMPLETED"]
    return runs if len(runs) == count else None


def scans_of(up: Up) -> dict[str, int]:
    """How many scan records the audit log has for each file."""
    events = json_lines(up.data / "log" / "audit.log")
    counts: dict[str, int] = {}
    for event in events:
        if event.get("event") == "scan":
            counts[event["file"]] = counts.get(event["file"], 0) + 1
    return counts


def clamd_pid(up: Up) -> int:
    pid: int = json.loads((up.data / "system" / "clamd.pid").read_text())["pid"]
    return pid


def test_scan_runs_overlap_on_postgresql_and_each_file_is_scanned_once(
        up: Up, tmp_path: Path) -> None:
    """clamd is paused (SIGSTOP) so that each run waits in its scan: a second upload's run
    starts beside the first's, as a third's, instead of waiting for them (on SQLite, one run
    per lane). Then clamd goes on, and every file is scanned exactly once."""
    assert '"event": "scan runs at once", "runs": 4, "reason": "Prefect on PostgreSQL"' \
        in up.stdout, up.tail()
    assert not list((up.data / "system" / "prefect").glob("*.db")), "Prefect used SQLite"
    names = ["first.csv", "second.csv", "third.csv"]
    pid = clamd_pid(up)
    os.kill(pid, signal.SIGSTOP)
    try:
        for at, name in enumerate(names, start=1):
            (tmp_path / name).write_bytes(f"{name}\n".encode() * 100)
            result = run_sftp(up.sftp_port, PARTNER, [f"put {name}"], cwd=tmp_path,
                              password=PARTNER_PW, timeout=120)
            assert result.returncode == 0, result.stderr
            wait_for(f"{at} scan runs running at once", lambda at=at: len(running(up)) == at,
                     details=lambda: repr(scan_runs(up)) + up.tail())
    finally:
        os.kill(pid, signal.SIGCONT)
    clean = up.data / "clean" / ACCOUNT_DIR
    wait_for("the three files in clean/",
             lambda: all((clean / name).is_file() for name in names), details=up.tail)
    runs = wait_for("three completed scan runs", lambda: completed(up, 3),
                    details=lambda: repr(scan_runs(up)))
    starts = [datetime.fromisoformat(run["start_time"]) for run in runs]
    ends = [datetime.fromisoformat(run["end_time"]) for run in runs]
    assert max(starts) < min(ends), "the runs' Running intervals do not overlap"
    assert scans_of(up) == {f"{ACCOUNT_DIR}/{name}": 1 for name in names}


# --- beyond one machine -----------------------------------------------------------------------

CLIENTS = 3
FILES_PER_CLIENT = 100
EICARS_PER_CLIENT = 10
KILLED = "w2"


def audit_records(up: Up) -> list[dict[str, Any]]:
    return json_lines(up.data / "log" / "audit.log")


def runs_since(up: Up, since: datetime, *, tag: str | None = None) -> list[dict[str, Any]]:
    """The scan runs started after ``since`` (optionally only those tagged ``tag``), page by
    page."""
    runs: list[dict[str, Any]] = []
    flow_runs: dict[str, Any] = {"start_time": {"after_": since.isoformat()}}
    if tag is not None:
        flow_runs["tags"] = {"all_": [tag]}
    while True:
        response = httpx.post(f"{up.api}/flow_runs/filter", timeout=30, json={
            "flows": {"name": {"any_": ["scan"]}}, "flow_runs": flow_runs,
            "sort": "START_TIME_ASC", "limit": 200, "offset": len(runs)})
        response.raise_for_status()
        page: list[dict[str, Any]] = response.json()
        runs += page
        if len(page) < 200:
            return runs


def overlapping(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The pairs of completed runs whose Running intervals overlap."""
    done = sorted((datetime.fromisoformat(run["start_time"]),
                   datetime.fromisoformat(run["end_time"]), run["name"])
                  for run in runs if run["state_type"] == "COMPLETED")
    return [(first[2], second[2]) for at, first in enumerate(done)
            for second in done[at + 1:] if second[0] < first[1]]


def write_uploads(directory: Path, client: int) -> dict[str, bytes]:
    """A client's files, by name: small, distinct bytes, every tenth EICAR."""
    files = {}
    for index in range(FILES_PER_CLIENT):
        if index % (FILES_PER_CLIENT // EICARS_PER_CLIENT) == 0:
            name, content = f"c{client}-{index:03d}-eicar.com", EICAR
        else:
            name = f"c{client}-{index:03d}.bin"
            content = name.encode() + os.urandom(2048 + 16 * index)
        (directory / name).write_bytes(content)
        files[name] = content
    return files


def scale_config(root: Path, up: Up) -> Path:
    """The accounts of ``up``'s config, its clamd, runs side by side as on PostgreSQL (a
    worker cannot learn the database of a Prefect server it did not start), and HAProxy's
    PROXY headers trusted."""
    config = root / "scale.yaml"
    config.write_text(textwrap.dedent(up_config()) + textwrap.dedent(f"""
        clamav:
          address: "{DataLayout.at(up.data).clamd_socket}"
        scanning:
          concurrentRuns: 4
        limits:
          proxyProtocol: true
          trustedProxies: ["{PROXY_SOURCE}"]
        """))
    return config


def held_claims(up: Up, worker: SsftpProcess) -> list[Path]:
    directory = up.data / "staging" / ".ssftp-claims" / process_owner(worker.pid)
    return [Path(parent, name) for parent, _, names in os.walk(directory) for name in names]


def judged_by(up: Up, worker: str, files: set[str]) -> set[str]:
    """Of ``files`` (staging sub paths), those ``worker`` has written a record of: an audit
    record, or the verdict record that reserves a quarantine name."""
    recorded = {record["file"] for record in audit_records(up)
                if record.get("event") == "scan" and record.get("worker") == worker}
    for path in (up.data / "quarantine").rglob("*.verdict.json"):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if record.get("worker") == worker:
                recorded.add(record["file"])
    return files & recorded


def kill_holding_claims(up: Up, worker: SsftpProcess, name: str) -> set[str]:
    """SIGKILL ``worker`` at a moment it holds claims, none of them between its record and its
    move; the staging sub paths it held.

    The worker is stopped (SIGSTOP) to look at it: a claim whose record is written but whose
    file has not moved yet is a crash window the design accepts (the file is scanned again,
    a second record; ssftp.scan.claims.Claim.quarantine), not the one this test is about, so
    the worker is let go on and looked at again."""
    staging = up.data / "staging"

    def stopped_holding() -> set[str] | None:
        os.killpg(worker.pid, signal.SIGSTOP)
        try:
            held = {sub_path_of(staging, path).as_posix() for path in held_claims(up, worker)}
            if held and not judged_by(up, name, held):
                os.killpg(worker.pid, signal.SIGKILL)
                worker.process.wait(timeout=30)  # reaped: no longer a live owner of its claims
                return held
            return None
        finally:
            if worker.process.poll() is None:
                os.killpg(worker.pid, signal.SIGCONT)

    # Looked at often: it holds a claim only while a file is being scanned.
    return wait_for(f"{name} holding claims of files it has not judged", stopped_holding,
                    details=lambda: worker.output.read_text(errors="replace")[-3000:],
                    interval=0.01)


def left_in_staging(up: Up) -> list[Path]:
    return sorted(path for path in (up.data / "staging").rglob("*") if not path.is_dir())


def test_workers_and_servers_beyond_one_machine_share_the_work_and_lose_nothing(
        up: Up, tmp_path: Path) -> None:
    """Two more ``ssftp worker`` (w1, w2) beside ``up``'s on its data root and its Prefect
    server, two ``ssftp serve`` behind HAProxy (roundrobin, PROXY v2); 3 OpenSSH clients upload
    300 files (30 EICAR) at once through HAProxy; w2 is SIGKILLed in a run while it holds
    claims (at a moment none of them is between its record and its move: see
    :func:`kill_holding_claims`). Every clean file lands in clean/ once with its bytes, every
    EICAR in quarantine, staging is left empty (w2's claims taken over by the live workers,
    not left for the next start), each file has one final record naming its worker, and runs
    overlapped.

    The shares compared are those of the two workers that lived through the whole run (``up``'s
    and w1): each scanned its own share and part of w2's, and neither did more than twice what
    the other did. w2's own count depends on when it was killed, so it is not compared."""
    started = datetime.now().astimezone()
    up_name, = live_workers(up.data / "system" / "workers", time.time())
    config = scale_config(tmp_path, up)
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(4) as pool:
        starting = [pool.submit(start_worker, tmp_path, config, up.data, name, up.api)
                    for name in ("w1", KILLED)]
        starting += [pool.submit(SsftpProcess.start, "serve", tmp_path, config, up.data,
                                 output=tmp_path / f"serve-{index}.out") for index in (1, 2)]
        for future in starting:  # each that started is stopped, whichever did not
            if future.exception() is None:
                stack.callback(future.result().stop)
        _, w2, serve1, serve2 = (future.result() for future in starting)
        wait_until_sharing(up.data / "system" / "workers", 3)
        port = free_port()
        stack.enter_context(haproxy(tmp_path, {port: [serve1.port, serve2.port]}, "roundrobin"))
        expected: dict[str, bytes] = {}
        batches = []
        for client in range(1, CLIENTS + 1):
            directory = tmp_path / f"client{client}"
            directory.mkdir()
            files = write_uploads(directory, client)
            expected.update(files)
            batches.append((directory, [f"put {name}" for name in files]))
        uploads = [pool.submit(run_sftp, port, PARTNER, commands, cwd=directory,
                               password=PARTNER_PW, timeout=300)
                   for directory, commands in batches]
        held = kill_holding_claims(up, w2, KILLED)
        # Killed mid-run: its run (which claims the files it scans) is Running for good.
        assert [run for run in runs_since(up, started, tag=worker_tag(KILLED))
                if run["state_type"] == "RUNNING"], "w2 was not killed in a run"
        for upload in uploads:
            result: SftpResult = upload.result()
            assert result.returncode == 0, result.stderr
        clean, quarantine = up.data / "clean" / ACCOUNT_DIR, up.data / "quarantine" / ACCOUNT_DIR
        eicars = {name for name, content in expected.items() if content == EICAR}

        def all_there() -> bool:
            return (all((clean / name).is_file() for name in expected.keys() - eicars)
                    and all((quarantine / name).is_file() for name in eicars)
                    and not left_in_staging(up))

        wait_for("every file in clean/ or quarantine/ and staging empty", all_there,
                 details=lambda: f"in staging: {left_in_staging(up)[:20]}\n{up.tail()}")
    for name, content in expected.items():
        assert (quarantine if name in eicars else clean).joinpath(name).read_bytes() == content
    clients = tuple(f"c{client}-" for client in range(1, CLIENTS + 1))
    assert sorted(path.name for path in clean.iterdir() if path.name.startswith(clients)) == \
        sorted(expected.keys() - eicars), "clean/ holds a file twice or one nobody uploaded"
    quarantined = sorted(path.name for path in quarantine.iterdir()
                         if not path.name.endswith(".verdict.json"))
    assert [name for name in quarantined if name.startswith(clients)] == sorted(eicars)
    workers = {up_name, "w1", KILLED}
    assert all((verdict_record(quarantine / name) or {}).get("worker") in workers
               for name in eicars)
    ours = {f"{ACCOUNT_DIR}/{name}" for name in expected}
    records = [record for record in audit_records(up)
               if record.get("event") == "scan" and record["file"] in ours]
    assert {record.get("worker") for record in records} <= workers, records
    final = [record for record in records if record["area"] != "staging"]
    assert Counter(record["file"] for record in final) == Counter(ours)
    takers = {record["worker"] for record in final if record["file"] in held}
    assert takers and KILLED not in takers, "the files w2 held were not taken over by others"
    shares = Counter(record["worker"] for record in final)
    survivors = [shares[up_name], shares["w1"]]
    assert max(survivors) <= 2 * min(survivors), shares
    pairs = overlapping(runs_since(up, started))
    assert pairs, "no two scan runs overlapped"
