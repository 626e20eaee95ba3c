"""What a scan outcome owes: the webhooks it sends and the Prefect event it raises, decided
in one place.

================================  ===============  =========================
outcome                           webhook          Prefect event
================================  ===============  =========================
clean/ (also unscanned)           none             ``ssftp.file.clean``
quarantine/, infected             ``virusFound``   ``ssftp.file.infected``
quarantine/, unscannable          ``scanError``    ``ssftp.file.unscannable``
quarantine/, blocked              ``virusFound``   ``ssftp.file.blocked``
left in staging, first failure    ``scanError``    ``ssftp.file.waiting``
left in staging, a retry failed   none             none
rescan: clean/ -> quarantine/     ``virusFound``   ``ssftp.file.infected``
rescan: left in place             none             none
released from quarantine          ``released``     ``ssftp.file.released``
================================  ===============  =========================

A file that could not be scanned is retried with backoff (for as long as clamd is away): its
first failure tells, its retries do not, so a receiver gets one message per file, not one per
retry. A rescan that finds a handed-on file infected owes what a fresh detection owes (its
payload's ``reason`` says ``rescan``); one that leaves the file in place owes only its audit
record: a rescan of 100 000 clean files is not 100 000 events.

A file blocked by a content policy (ssftp.scan.policy) owes a ``virusFound`` webhook whose
``reason`` is ``policy``, rather than a webhook name of its own: the receivers an operator
already has for detections hear of it without a config change, and tell it apart by that field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ssftp.config.schema import SsftpConfig
from ssftp.notify.webhooks import Notification
from ssftp.scan.results import Area, ScanResult
from ssftp.scan.verdict import VerdictKind

VIRUS_FOUND = "virusFound"
SCAN_ERROR = "scanError"
RELEASED = "released"
CLEAN = "ssftp.file.clean"
INFECTED = "ssftp.file.infected"
UNSCANNABLE = "ssftp.file.unscannable"
BLOCKED = "ssftp.file.blocked"
WAITING = "ssftp.file.waiting"
RELEASED_EVENT = "ssftp.file.released"


@dataclass(frozen=True)
class Owed:
    notifications: list[Notification]
    # The Prefect event's name; None for none.
    event: str | None


def owed(result: ScanResult, failures: int, config: SsftpConfig) -> Owed:
    """What ``result`` owes; ``failures``: how many scans of the same staged file had failed
    in a row before this one (0: its first)."""
    webhook, event = _due(result, failures)
    notifications = [] if webhook is None else [
        Notification.build(hook, webhook, result, config.instance_name)
        for hook in config.webhooks if hook.name == webhook]
    return Owed(notifications, event)


def owed_release(result: ScanResult, config: SsftpConfig,
                 release: Mapping[str, Any]) -> Owed:
    """What a release from quarantine owes (the last row above); ``release`` is what the
    webhook body adds to a scan's fields: the reason, the operator, the approver."""
    return Owed([Notification.build(hook, RELEASED, result, config.instance_name, release)
                 for hook in config.webhooks if hook.name == RELEASED], RELEASED_EVENT)


def _due(result: ScanResult, failures: int) -> tuple[str | None, str | None]:
    """The webhook event and the Prefect event of the table above."""
    if result.reason == "rescan":
        return (VIRUS_FOUND, INFECTED) if not result.stays else (None, None)
    if result.area is Area.CLEAN:
        return None, CLEAN
    if result.area is Area.QUARANTINE:
        if result.verdict is VerdictKind.INFECTED:
            return VIRUS_FOUND, INFECTED
        if result.verdict is VerdictKind.BLOCKED:
            return VIRUS_FOUND, BLOCKED
        return SCAN_ERROR, UNSCANNABLE
    if failures == 0:
        return SCAN_ERROR, WAITING
    return None, None
