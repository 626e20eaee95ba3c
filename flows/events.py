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
``ssftp.verdict``   ``clean``, ``infected``, ``unscannable``, ``blocked``, ``unscanned`` or
                    ``error``
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
worker, which batches the sends. Which event a scan outcome raises is not decided here: the
scanner's record step names it (:func:`ssftp.notify.owed.owed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from prefect.events import emit_event

from ssftp.logs import one_line, printable
from ssftp.notify.owed import CLEAN
from ssftp.scan.queue import PrefectDatabase
from ssftp.scan.results import ScanResult
from ssftp.transfer.local import Outcome, TransferResult

FILE_RESOURCE = "ssftp.file."
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


def clean_events_on(setting: bool | Literal["auto"], database: PrefectDatabase | None) -> bool:
    """Whether clean files are events (``scanning.cleanFileEvents``): by default only where
    the Prefect server's database takes a write per file beside the runs' own (PostgreSQL);
    on SQLite they turned the runs' writes away."""
    if setting == "auto":
        return database is PrefectDatabase.POSTGRESQL
    return setting


def is_told(event: str, clean_events: bool) -> bool:
    """Whether an outcome's event goes to Prefect: all but a clean file's, which only when
    :func:`clean_events_on`."""
    return clean_events or event != CLEAN


def scan_event(name: str, result: ScanResult, instance: str) -> FileEvent:
    """The event ``name`` of a scan outcome (:attr:`ScanResult.event`)."""
    return FileEvent(
        name=name,
        resource=file_resource(sha256=result.sha256, path=result.file, size=result.size,
                               account=result.account, instance=instance,
                               signature=result.signature, verdict=str(result.verdict)),
        related=related_resources(flow_run_id=result.flow_run_id, account=result.account,
                                  instance=instance),
        payload={"sha256": result.sha256, "detail": printable(result.detail),
                 "engine": result.engine, "database": result.database,
                 "reason": result.reason,
                 "source": printable(result.source),
                 "destination": printable(result.destination), "time": result.time})


def transfer_event(result: TransferResult, *, path: str, account: str | None,
                   instance: str, flow_run_id: str | None,
                   entry: tuple[str, str]) -> FileEvent:
    """``downloaded`` or ``uploaded`` for one file (a row whose outcome is one of those) that a
    downloader or uploader ``entry`` (role, name) moved. ``path`` names the file locally
    (``<account dir>/<sub path>``, as its scan events do)."""
    return FileEvent(
        name=MOVED[result.outcome],
        resource=file_resource(sha256=result.sha256, path=path, size=result.bytes,
                               account=account, instance=instance),
        related=related_resources(flow_run_id=flow_run_id, account=account,
                                  instance=instance, entry=entry),
        payload={"sha256": result.sha256, "bytes": result.bytes,
                 "detail": printable(result.detail)})
