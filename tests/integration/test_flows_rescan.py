"""Rescan runs, run for real through the Prefect test harness and a real clamd: a stop in the
middle of one ends it with what it did (it was Crashed), and a rescan scans within the
clamd's budget as scans do."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from flows.clamd_budget import limit_name
from flows.rescan import RescanRuns
from ssftp.scan.record import AuditRecorder
from ssftp.scan.rescan import Rescanner
from ssftp.scan.results import ScanResult
from testkit.files import EICAR
from tests.support.scanning import files_under, write

INSTANCE = "rescan-runs-test"


@dataclass(frozen=True)
class HoldsOneFile(Rescanner):
    """A real rescanner that holds one file until the test has stopped the run: the moment of
    a Ctrl-C, mid-run, cannot be hit for real otherwise."""

    hold: str = ""
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def rescan(self, path: Path, flow_run_id: str | None = None) -> ScanResult | None:
        if path.name == self.hold:
            self.reached.set()
            self.release.wait(60)
        return super().rescan(path, flow_run_id)


def test_a_stop_mid_rescan_ends_the_run_interrupted_with_what_it_did(prefect_api, layout,
                                                                    client, owners):
    paths = [write(layout.clean / "partner-a" / name, EICAR if name == "a.com" else b"ok\n")
             for name in ("a.com", "b.txt", "c.txt", "d.txt")]
    rescanner = HoldsOneFile(layout, client, AuditRecorder(), owners, INSTANCE,
                             worker="rescanner-2", hold="b.txt")

    async def stop_at_the_second_file() -> int:
        run = asyncio.create_task(RescanRuns(rescanner, lambda: False).rescan(paths, "test-1"))
        await asyncio.to_thread(rescanner.reached.wait, 60)
        held = await slots_in_use(limit_name([client.address]))
        run.cancel()
        for _ in range(10):  # the run sees the cancellation before the held file ends
            await asyncio.sleep(0)
        rescanner.release.set()
        with pytest.raises(asyncio.CancelledError):
            await run
        return held

    assert asyncio.run(stop_at_the_second_file()) == 1  # the rescan holds a slot of the clamd
    assert asyncio.run(slots_in_use(limit_name([client.address]))) == 0
    assert [path.name for path in files_under(layout.quarantine)] == ["a.com", "a.com.verdict.json"]
    run = asyncio.run(interrupted_run())
    assert run.state is not None
    assert run.state.type.value == "CANCELLED"
    assert run.state.message is not None
    assert run.state.message.startswith("interrupted by a stop after 2 of 4: ")
    assert {"interrupted", f"instance:{INSTANCE}", "worker:rescanner-2"} <= set(run.tags)


async def slots_in_use(limit: str) -> int:
    async with get_client() as client:
        return (await client.read_global_concurrency_limit_by_name(limit)).active_slots


async def interrupted_run() -> FlowRun:
    async with get_client() as client:
        [run] = [run for run in await client.read_flow_runs()
                 if run.state is not None and run.state.name == "Interrupted"
                 and f"instance:{INSTANCE}" in run.tags]
    return run
