"""The rescan watcher: when the signatures clamd has loaded change, every handed-on file is
looked at again, as Prefect ``rescan`` runs.

Every :data:`LOOK_SECONDS` it asks clamd which engine and database it has loaded
(``engine/database``, :mod:`ssftp.scan.signatures`: custom signatures change it too). When
that is not what the last whole rescan was for (``system/rescan.json``: so an update while
ssftp was down, or a first start, counts too), ``clean/`` (and ``uploadarchive/`` with
``rescan.includeArchive``) is rescanned; the new signatures are remembered once every file has
had its look, not when clamd went away half-way (the next look starts again). An update by
``ssftp update-signatures``, by the ``signatures`` deployment or by
a freshclam beside clamd (Docker) is all the same to it.

A file a scan run passed to ``clean/`` with older signatures than the loaded ones (its scan
began before a reload, and it landed after the rescan had listed ``clean/``) is handed here by
the worker (:meth:`RescanWatcher.judged`) and looked at with the next look.

Never twice at once: one watcher per process, and every rescan (an operator's ``ssftp rescan``
too) holds ``system/locks/rescan-all.lock``; a look that finds it held waits for the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flows.rescan import RescanRuns
from ssftp.config.schema import RescanSettings
from ssftp.layout import DataLayout
from ssftp.logs import APP, log_event
from ssftp.run_lock import exclusive_run
from ssftp.scan.rescan import handed_on_files, remember_rescanned, rescanned_for
from ssftp.scan.results import Area, ScanResult

logger = logging.getLogger(APP)

RESCAN_LOCK = ("rescan", "all")
# How often clamd is asked which signatures it has loaded: a VERSION and a 48-byte scan, so a
# change (the signatures deployment's, or a freshclam's beside clamd) is seen within seconds.
LOOK_SECONDS = 5.0


def rescanned_areas(settings: RescanSettings) -> list[Area]:
    """What a rescan on new signatures covers: clean/, and uploadarchive/ when asked."""
    return [Area.CLEAN, *([Area.UPLOADARCHIVE] if settings.include_archive else [])]


@dataclass
class RescanWatcher:
    layout: DataLayout
    # The rescan runs of the scanner in use (a reload swaps it); None with scanning off.
    runs: Callable[[], RescanRuns | None]
    settings: Callable[[], RescanSettings]
    # Files passed to clean/ with older signatures than those loaded at the last look.
    _late: set[Path] = field(init=False, default_factory=set)
    _loaded: str | None = field(init=False, default=None)

    def judged(self, results: Iterable[ScanResult]) -> None:
        """A scan run's results: those that reached clean/ judged by other signatures than the
        ones last seen loaded are looked at again."""
        if self._loaded is None:
            return
        for result in results:
            if (result.area is Area.CLEAN and result.engine is not None
                    and f"{result.engine}/{result.database}" != self._loaded):
                self._late.add(self.layout.root / result.destination)

    async def run(self) -> None:
        """Look, then look again every LOOK_SECONDS, until cancelled."""
        while True:
            await self.look()
            await asyncio.sleep(LOOK_SECONDS)

    async def look(self) -> None:
        """One look: rescan what the loaded signatures have not seen yet."""
        runs = self.runs()
        if runs is None:
            return
        try:
            loaded = str(await asyncio.to_thread(runs.rescanner.client.signatures))
        except OSError:
            return  # clamd is away: the staging watcher says so; look again later
        self._loaded = loaded
        with exclusive_run(self.layout.system, *RESCAN_LOCK) as ours:
            if not ours:
                return
            if rescanned_for(self.layout) != loaded:
                await self._rescan_all(runs, loaded)
            elif self._late:
                late, self._late = sorted(self._late), set()
                await runs.rescan([path for path in late if path.exists()], loaded)

    async def _rescan_all(self, runs: RescanRuns, loaded: str) -> None:
        areas = rescanned_areas(self.settings())
        log_event(logger, "signatures changed: rescanning handed-on files", signatures=loaded,
                  areas=",".join(areas))
        for area in areas:
            await asyncio.to_thread(runs.rescanner.recover, area)
        # Before the listing: whatever is in clean/ by then is in this rescan, and a file that
        # lands later with older signatures is handed in again.
        self._late.clear()
        paths = await asyncio.to_thread(
            lambda: [path for area in areas for path in handed_on_files(self.layout, area)])
        results = await runs.rescan(paths, loaded) if paths else []
        if any(result.clamd_unreachable for result in results):
            log_event(logger, "rescan incomplete: clamd went away; it starts again on the next "
                      "look", logging.WARNING, signatures=loaded)
            return
        await asyncio.to_thread(remember_rescanned, self.layout, loaded)
        log_event(logger, "rescan done", signatures=loaded, files=len(results),
                  quarantined=sum(not result.stays for result in results))
