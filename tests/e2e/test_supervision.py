"""clamd supervision and children that die with their parent (issue 13, items 2 and 4), with
one real ``ssftp up`` for the module, in this order: its clamd is SIGKILLed (it is restarted
and scanning goes on), then ``up`` itself is SIGKILLed (nothing of it stays), then a new ``up``
starts on the same data root beside a clamd and a Prefect server left running with their pid
files (it stops them, comes up and scans). The plain parts (restart backoff, exits, pid files,
stale sockets, children) are in tests/unit/test_runtime_*.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.layout import DataLayout
from ssftp.runtime.clamd_daemon import clamd_argv, render_config, socket_in
from ssftp.runtime.pid_files import record_pid
from ssftp.runtime.prefect_server import is_healthy
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import TEST_SIGNATURES
from testkit.openssh_server import free_port
from testkit.sftp_client import run_sftp
from tests.support.cli import child_env
from tests.support.logs import json_lines
from tests.support.system import dead_process_id
from tests.support.up import (
    ACCOUNT_DIR,
    PARTNER,
    PARTNER_PW,
    Up,
    descendants,
    is_alive,
    launch_up,
    shut_down,
    up_for_module,
    wait_until_up,
)
from tests.support.waiting import wait_for

# --- a real ssftp up: clamd killed, up killed, a new up beside a leftover clamd ---------------


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with up_for_module(tmp_path_factory.mktemp("supervised")) as instance:
        yield instance


def clamd_children(instance: Up) -> list[int]:
    return [proc.pid for proc in descendants(instance.proc.pid)
            if Path(proc.cmdline.split(" ")[0]).name == "clamd"]


def upload_and_wait_clean(instance: Up, client: Path, name: str) -> None:
    (client / name).write_bytes(b"scanned after a fault: " + name.encode() + b"\n")
    put = run_sftp(instance.sftp_port, PARTNER, [f"put {name}"], cwd=client,
                   password=PARTNER_PW, timeout=120)
    assert put.returncode == 0, put.stdout + put.stderr
    target = instance.data / "clean" / ACCOUNT_DIR / name
    wait_for(f"{name} scanned clean", target.is_file, timeout=120, details=instance.tail)


def app_log(instance: Up) -> list[dict[str, object]]:
    return json_lines(instance.data / "log" / "ssftp.log")


def test_a_killed_clamd_is_restarted_and_scanning_goes_on(up, tmp_path):
    (first,) = clamd_children(up)
    os.kill(first, signal.SIGKILL)
    upload_and_wait_clean(up, tmp_path, "after-clamd-died.txt")
    (second,) = clamd_children(up)
    assert second != first
    died = [record for record in app_log(up) if record.get("event") == "clamd died"]
    assert died, up.tail()
    assert "SIGKILL" in str(died[0]["exit"])
    assert "Self checking every" in str(died[0]["log_tail"])  # the end of clamd's own log
    assert json.loads(DataLayout.at(up.data).clamd_pid_file.read_text())["pid"] == second


def test_a_killed_up_takes_its_clamd_and_prefect_server_with_it(up):
    children = descendants(up.proc.pid)
    assert any("prefect" in proc.cmdline for proc in children), children
    assert any("clamd" in proc.cmdline for proc in children), children
    up.proc.kill()
    up.proc.wait(timeout=30)
    wait_for("no process of the killed ssftp up left",
             lambda: not [proc for proc in children if is_alive(proc)], timeout=15,
             details=lambda: "\n".join(f"{p.pid}: {p.cmdline}" for p in children
                                       if is_alive(p)))


def plant_clamd(layout: DataLayout) -> subprocess.Popen[bytes]:
    """A clamd as a killed ``up`` leaves it: running on the data root's socket and log, with
    its pid file, its owner gone."""
    conf = render_config(layout.clamd, TEST_SIGNATURES, 10 * 1024 * 1024, None)
    socket_in(layout.clamd).unlink(missing_ok=True)
    clamd = subprocess.Popen(clamd_argv(conf), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("the planted clamd answering",
             lambda: clamd.poll() is None and socket_in(layout.clamd).exists()
             and _pings(socket_in(layout.clamd)), timeout=60)
    record_pid(layout.clamd_pid_file, clamd.pid, owner=dead_process_id())
    return clamd


def _pings(path: Path) -> bool:
    return ClamdClient(ClamdAddress(unix_path=str(path)), timeout=5).ping()


def plant_prefect_server(layout: DataLayout, port: int) -> subprocess.Popen[bytes]:
    """A Prefect server as a killed ``up`` leaves it: answering on the port, with its pid
    file, its owner gone (a next start would otherwise adopt a server that is going away)."""
    prefect = Path(sys.executable).with_name("prefect")
    env = {**child_env(), "PREFECT_HOME": str(layout.system / "prefect")}
    server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--analytics-off"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_for("the planted Prefect server answering",
             lambda: server.poll() is None and is_healthy(f"http://127.0.0.1:{port}/api"),
             timeout=120)
    record_pid(layout.prefect_pid_file, server.pid, owner=dead_process_id())
    return server


def test_a_new_up_stops_what_a_killed_one_left_and_scans(up, tmp_path):
    assert up.proc.poll() is not None, "the previous test kills ssftp up"
    layout = DataLayout.at(up.data)
    prefect_port = free_port()
    leftovers = [plant_clamd(layout), plant_prefect_server(layout, prefect_port)]
    again = launch_up(up.root, up.root / "ssftp.yaml", up.data, free_port(), prefect_port)
    try:
        wait_until_up(again)
        for leftover in leftovers:
            assert leftover.wait(timeout=30) is not None
        events = {str(record.get("event")): record.get("pid") for record in app_log(again)}
        assert events.get("stopped the clamd a killed ssftp left running") == leftovers[0].pid
        assert events.get("stopped the Prefect server a killed ssftp left running") == \
            leftovers[1].pid
        # The new up runs a server of its own on the port, not the one it stopped.
        assert [proc for proc in descendants(again.proc.pid) if "prefect" in proc.cmdline]
        upload_and_wait_clean(again, tmp_path, "after-restart.txt")
    finally:
        for leftover in leftovers:
            with contextlib.suppress(ProcessLookupError):
                leftover.kill()
            leftover.wait()
        shut_down(again)
