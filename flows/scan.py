"""The scan flow: one run per batch of completed staged files, one task per slice of the batch.

A run's verdict table (an artifact) and its logs show every file, so a thousand small files
cost one flow run and a few task runs, not a thousand runs. The work itself is
:meth:`ssftp.scanner.Scanner.scan`; this module only spreads it over threads and reports.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ssftp.scanner import Scanner, ScanResult
from ssftp.verdict_router import Area

# Scans in flight at once; clamd.conf gives clamd four threads too.
SCAN_THREADS = 4
# Files per task: small enough that the UI shows progress, large enough that task overhead
# (~5 ms each) stays small next to scanning.
MAX_FILES_PER_TASK = 50

VERDICT_TABLE_KEY = "scan-verdicts"


def slices(paths: list[str], workers: int = SCAN_THREADS,
           most: int = MAX_FILES_PER_TASK) -> list[list[str]]:
    """Split a batch evenly over the workers, at most ``most`` files per slice."""
    if not paths:
        return []
    size = max(1, min(most, math.ceil(len(paths) / workers)))
    return [paths[start:start + size] for start in range(0, len(paths), size)]


def verdict_row(result: ScanResult) -> dict[str, object]:
    return {"file": result.file, "size": result.size, "sha256": result.sha256,
            "verdict": result.verdict, "signature": result.signature or "",
            "destination": result.destination, "detail": result.detail}


def _scan_slice(scanner: Scanner, paths: list[str], flow_run_id: str | None,
                logger: logging.LoggerAdapter[logging.Logger]) -> list[ScanResult]:
    results = []
    for path in paths:
        result = scanner.scan(Path(path), flow_run_id)
        if result is None:
            logger.info("%s: gone before it could be scanned", path)
            continue
        log = logger.warning if result.area is not Area.CLEAN else logger.info
        log("%s: %s (%s) -> %s", result.file, result.verdict, result.detail, result.destination)
        results.append(result)
    return results


@task(name="scan-files", cache_policy=NO_CACHE,
      task_run_name="scan {label}")
async def scan_files(scanner: Scanner, paths: list[str], label: str,
                     flow_run_id: str | None, slots: asyncio.Semaphore) -> list[ScanResult]:
    # Scanning blocks (file reads, clamd sockets): a thread keeps the event loop, which may
    # also be serving SFTP clients, free.
    async with slots:
        return await asyncio.to_thread(_scan_slice, scanner, paths, flow_run_id,
                                       get_run_logger())


def _label(paths: list[str]) -> str:
    first = Path(paths[0]).name if paths else "nothing"
    return first + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")


def _run_name() -> str:
    return f"scan {_label(flow_run.parameters.get('paths', []))}"


class ScanRuns:
    """The scan flow bound to this process's :class:`Scanner` (kept out of run parameters).

    The scanner is swapped when the config is reloaded; a run in progress keeps its own.
    """

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner

    @flow(name="scan", flow_run_name=_run_name)
    async def scan_batch(self, paths: list[str]) -> list[ScanResult]:
        scanner = self.scanner
        run_id = flow_run.id
        slots = asyncio.Semaphore(SCAN_THREADS)
        parts = await asyncio.gather(*(scan_files(scanner, part, _label(part), run_id, slots)
                                       for part in slices(paths)))
        results = [result for part in parts for result in part]
        counts = {area: sum(r.area is area for r in results) for area in Area}
        await acreate_table_artifact(
            table=[verdict_row(result) for result in results], key=VERDICT_TABLE_KEY,
            description=(f"{counts[Area.CLEAN]} clean, {counts[Area.QUARANTINE]} quarantined, "
                         f"{counts[Area.STAGING]} left in staging to retry"))
        if counts[Area.STAGING]:
            get_run_logger().warning("%d file(s) could not be scanned and will be retried",
                                     counts[Area.STAGING])
        return results
