"""Quarantine in tests: files quarantined by a real scan (with their verdict records), and the
config of an instance with one staging account and a webhook per event."""

from __future__ import annotations

from pathlib import Path

from ssftp.config.schema import SsftpConfig
from ssftp.layout import DataLayout
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.owners import StagingOwners
from tests.support.scanning import make_scanner, stage

ACCOUNT = "acme"


def quarantine_config(webhook_url: str | None = None, **extra: object) -> SsftpConfig:
    """The instance ``gw-q`` with the staging account ``acme``, and a ``released`` webhook to
    ``webhook_url`` when one is given."""
    data: dict[str, object] = {
        "instanceName": "gw-q",
        "users": {"stagingDir": [{"directory": ACCOUNT,
                                  "auth": {"username": ACCOUNT, "password": "pw"}}]},
        **extra}
    if webhook_url is not None:
        data["webhooks"] = [{"name": "released", "url": webhook_url}]
    return SsftpConfig.model_validate(data)


def quarantined(layout: DataLayout, client: ClamdClient, sub_path: str, data: bytes) -> Path:
    """``data`` staged as ``staging/<sub_path>`` and scanned: where the scan put it (in
    quarantine, beside its verdict record, when clamd detects it). Needs the audit log."""
    scanner = make_scanner(layout, client, StagingOwners(quarantine_config()))
    result = scanner.scan(stage(layout, sub_path, data))
    assert result is not None
    return layout.root / result.destination
