"""A worker's recorder (the scanner's port, :class:`ssftp.scan.record.Recorder`): the audit
record, then the webhooks the outcome owes (:func:`ssftp.notify.owed.owed`) in the outbox, both
before the file moves; the Prefect event of the outcome back to the scan flow.

The rule needs each staged file's failed scans in a row: they are counted here, as outcomes
are recorded, in memory like the staging queue's retries. A restart forgets them, and a file
still failing then tells once more. The count of a file that leaves staging is dropped, and
so, past :data:`FAILURES_KEPT` files, is the oldest (a file deleted while it failed never
leaves staging through a scan): it, too, would tell once more.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

from ssftp.config.schema import SsftpConfig
from ssftp.errors import OutboxError
from ssftp.logs import APP, log_event, one_line
from ssftp.notify.outbox import Outbox
from ssftp.notify.owed import owed
from ssftp.scan.record import write_audit
from ssftp.scan.results import ScanResult

logger = logging.getLogger(APP)
FAILURES_KEPT = 100_000


class OutboxRecorder:
    def __init__(self, outbox: Outbox, config: Callable[[], SsftpConfig]) -> None:
        self.outbox = outbox
        # Read at each outcome: a reloaded config's webhooks apply at once.
        self._config = config
        self._lock = threading.Lock()  # the scan threads of a run record at once
        self._failures: OrderedDict[str, int] = OrderedDict()

    def record(self, result: ScanResult, audit: Mapping[str, object], *,
               quiet: bool = False) -> str | None:
        stays = result.stays
        with self._lock:
            failures = self._failures.get(result.file, 0)
        write_audit(result, audit, quiet=quiet)
        due = owed(result, failures, self._config())
        if due.notifications:
            try:
                self.outbox.add(item.stored() for item in due.notifications)
            except OutboxError as exc:
                if not stays:
                    raise
                log_event(logger, "webhook notifications not stored", logging.ERROR,
                          error=str(exc), file=one_line(result.file))
        if result.reason == "rescan":  # a staged file's failures count its retries only
            return due.event
        with self._lock:
            if stays:
                self._failures[result.file] = failures + 1
                self._failures.move_to_end(result.file)
                if len(self._failures) > FAILURES_KEPT:
                    self._failures.popitem(last=False)
            else:
                self._failures.pop(result.file, None)
        return due.event
