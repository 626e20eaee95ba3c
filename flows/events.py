"""Prefect events, one per file outcome: what an Automation reacts to and the Event Feed shows.

Every event's resource is the file's content, ``ssftp.file.<sha256>``, so one file's whole path
through chained instances that share a Prefect server (received, scanned, uploaded onward,
downloaded, scanned again) is one resource filter in the Event Feed. Its labels say where the
file was seen (all strings, "" when a value does not apply or is not known):

==================  =====================================================================
``ssftp.path``      ``<account dir>/<sub path>``, as the audit log and the verdict table name it
``ssftp.size``      bytes, in decimal
``ssftp.account``   the staging account or ``downloader:<name>`` that owns the file
``ssftp.instance``  ``instanceName`` of the instance that emitted the event
``ssftp.signature`` what clamd found (infected files only)
``ssftp.verdict``   ``clean``, ``infected``, ``unscannable``, ``unscanned`` or ``error``
==================  =====================================================================

Related resources: the flow run (``prefect.flow-run.<id>``, role ``flow-run``, as Prefect
names it), the account (``ssftp.account.<name>``, role ``account``), the instance
(``ssftp.instance.<name>``, role ``instance``) and, for transfers, the downloader or uploader
(``ssftp.downloader.<name>`` / ``ssftp.uploader.<name>``).

A file whose content could not be hashed (the scanner could not read it; a transfer's local
copy changed before it was hashed) has no content identity: its resource is then
``ssftp.file.unhashed.<instance>.<path>``, distinct per file and still under ``ssftp.file.``.

Names come from file names, which may hold control bytes or bytes that are not UTF-8: every
label is made printable and one line first (``ssftp.logs.one_line``). Building an event is
plain functions (tested directly); :meth:`FileEvent.emit` hands it to Prefect's events
worker, which batches the sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prefect.events import emit_event

from ssftp.logs import one_line, printable
from ssftp.notify.webhooks import event_for
from ssftp.scan.clamd import VerdictKind
from ssftp.scan.router import Area
from ssftp.scan.scanner import ScanResult
from ssftp.transfer.local import Outcome, TransferResult

FILE_RESOURCE = "ssftp.file."
CLEAN = "ssftp.file.clean"
INFECTED = "ssftp.file.infected"
UNSCANNABLE = "ssftp.file.unscannable"
WAITING = "ssftp.file.waiting"
DOWNLOADED = "ssftp.file.downloaded"
UPLOADED = "ssftp.file.uploaded"
# The event of a transfer row that moved a file.
MOVED: dict[Outcome, str] = {"downloaded": DOWNLOADED, "uploaded": UPLOADED}


@dataclass(frozen=True)
class FileEvent:
    """One event as Prefect's ``emit_event`` takes it."""

    name: str
    resource: dict[str, str]
    related: list[dict[str, str]]
    payload: dict[str, Any]

    def emit(self) -> None:
        emit_event(self.name, resource=self.resource, related=self.related,
                   payload=self.payload)


def resource_id(sha256: str | None, instance: str, path: str) -> str:
    if sha256:
        return f"{FILE_RESOURCE}{sha256}"
    return f"{FILE_RESOURCE}unhashed.{one_line(instance)}.{one_line(path)}"


def file_resource(*, sha256: str | None, path: str, size: int | None, account: str | None,
                  instance: str, signature: str | None = None,
                  verdict: str = "") -> dict[str, str]:
    return {"prefect.resource.id": resource_id(sha256, instance, path),
            "prefect.resource.name": one_line(path),
            "ssftp.path": one_line(path),
            "ssftp.size": "" if size is None else str(size),
            "ssftp.account": one_line(account or ""),
            "ssftp.instance": one_line(instance),
            "ssftp.signature": one_line(signature or ""),
            "ssftp.verdict": verdict}


def _related(kind: str, name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"ssftp.{kind}.{one_line(name)}",
            "prefect.resource.role": kind, "prefect.resource.name": one_line(name)}


def related_resources(*, flow_run_id: str | None, account: str | None, instance: str,
                      entry: tuple[str, str] | None = None) -> list[dict[str, str]]:
    """The run, the account, the instance and the transfer entry (role, name) an event
    involves; what is not known is left out."""
    related = []
    if flow_run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                        "prefect.resource.role": "flow-run"})
    if account:
        related.append(_related("account", account))
    related.append(_related("instance", instance))
    if entry is not None:
        related.append(_related(*entry))
    return related


def _scan_event(name: str, result: ScanResult, instance: str) -> FileEvent:
    return FileEvent(
        name=name,
        resource=file_resource(sha256=result.sha256, path=result.file, size=result.size,
                               account=result.account, instance=instance,
                               signature=result.signature, verdict=str(result.verdict)),
        related=related_resources(flow_run_id=result.flow_run_id, account=result.account,
                                  instance=instance),
        payload={"sha256": result.sha256, "detail": printable(result.detail),
                 "source": printable(result.source),
                 "destination": printable(result.destination), "time": result.time})


def outcome_event(result: ScanResult, instance: str) -> FileEvent | None:
    """The event of a file the scan moved on: ``clean`` (also unscanned, with scanning off:
    its verdict label says so), ``infected`` or ``unscannable``. None for a file left in
    staging: whether it raises ``waiting`` is known only once its attempts are counted
    (:func:`waiting_event`)."""
    if result.area is Area.CLEAN:
        return _scan_event(CLEAN, result, instance)
    if result.area is Area.QUARANTINE:
        name = INFECTED if result.verdict is VerdictKind.INFECTED else UNSCANNABLE
        return _scan_event(name, result, instance)
    return None


def waiting_event(result: ScanResult, instance: str, attempt: int) -> FileEvent | None:
    """``waiting`` for a file left in staging, on the first failure of an outage only: the
    rule of the ``scanError`` webhook (:func:`ssftp.notify.webhooks.event_for`), so a file retried
    with backoff raises one event, not one per retry."""
    if result.area is not Area.STAGING or event_for(result, attempt) is None:
        return None
    return _scan_event(WAITING, result, instance)


def emit_waiting(results: Iterable[ScanResult], attempts: dict[str, int],
                 instance: str) -> None:
    """After a run, with each failed file's attempt count (the staging queue's)."""
    for result in results:
        event = waiting_event(result, instance, attempts.get(result.file, 1))
        if event is not None:
            event.emit()


def transfer_event(result: TransferResult, *, path: str, account: str | None,
                   instance: str, flow_run_id: str | None,
                   entry: tuple[str, str]) -> FileEvent:
    """``downloaded`` or ``uploaded`` for one file (a row whose result is one of those) that a
    downloader or uploader ``entry`` (role, name) moved. ``path`` names the file locally
    (``<account dir>/<sub path>``, as its scan events do)."""
    return FileEvent(
        name=MOVED[result.result],
        resource=file_resource(sha256=result.sha256, path=path, size=result.bytes,
                               account=account, instance=instance),
        related=related_resources(flow_run_id=flow_run_id, account=account,
                                  instance=instance, entry=entry),
        payload={"sha256": result.sha256, "bytes": result.bytes,
                 "detail": printable(result.detail)})
