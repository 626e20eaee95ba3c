"""What the scanner sees besides signatures, end to end: encrypted archives and true file types.

Real sftp uploads, the worker as ``ssftp up`` runs it, a real clamd with ssftp's clamd.conf
(``AlertEncrypted``), real Prefect, a real webhook receiver. Two partners: ``partner-a`` may
send text and zip archives only (``allowedFileTypes``) and no encrypted files (the default);
``partner-b`` allows encrypted files.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.files import EICAR
from testkit.sftp_client import run_sftp
from tests.support.config import PARTNER_PASSWORD
from tests.support.gateway import unique_name
from tests.support.pipeline import SCAN_LIMIT, Pipeline, running_pipeline
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver

B_PASSWORD = "partner-b-password"


def policy_config(clamd_socket: Path, receiver: WebhookReceiver) -> str:
    return f"""
    sftpPort: 0
    fsyncUploads: false
    instanceName: policy-test
    clamav:
      address: {clamd_socket}
      maxFileSize: {SCAN_LIMIT}
    scanning:
      stableSeconds: 0.2
      batchWindowSeconds: 0.1
    webhooks:
      - name: virusFound
        url: {receiver.url}/hook
      - name: scanError
        url: {receiver.url}/hook
    users:
      stagingDir:
        - directory: partner-a
          allowedFileTypes: ["text/*", "application/zip"]
          auth:
            username: partner-a
            password: {PARTNER_PASSWORD}
        - directory: partner-b
          allowEncrypted: true
          auth:
            username: partner-b
            password: {B_PASSWORD}
    """


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("policy"), policy_config) as stack:
        yield stack


def encrypted_zip(workdir: Path, name: str, member: bytes) -> Path:
    """A zip whose one member is under a password (traditional PKWARE encryption)."""
    inner = workdir / f"{name}.member"
    inner.write_bytes(member)
    target = workdir / name
    subprocess.run(["zip", "-q", "-j", "-P", "secret", str(target), str(inner)], check=True)
    return target


def test_an_encrypted_zip_holding_eicar_is_quarantined_as_unscannable(pipeline: Pipeline,
                                                                      workdir: Path):
    name = f"enc-{unique_name()}.zip"
    encrypted_zip(workdir, name, EICAR)
    pipeline.upload(workdir, [f"put {name}"])

    record = pipeline.kept_out(name)
    assert record["verdict"] == "unscannable"
    assert str(record["detail"]).startswith("encrypted archive")
    assert record["signature"] == "Heuristics.Encrypted.Zip"
    wait_for("the scanError webhook", lambda: pipeline.receiver.received("/hook", name))
    (request,) = pipeline.receiver.received("/hook", name)
    assert request.headers["X-Ssftp-Event"] == "scanError"


def test_an_account_that_allows_encrypted_files_gets_them_marked_not_inspected(
        pipeline: Pipeline, workdir: Path):
    name = f"enc-{unique_name()}.zip"
    encrypted_zip(workdir, name, EICAR)
    result = run_sftp(pipeline.server.port, "partner-b", [f"put {name}"], cwd=workdir,
                      password=B_PASSWORD)
    assert result.returncode == 0, result.stderr

    cleaned = pipeline.layout.clean / "partner-b" / name
    wait_for("the encrypted zip in clean", cleaned.exists)
    (record,) = pipeline.scans_of(name)
    assert record["verdict"] == "clean"
    assert record["inspected"] is False
    assert str(record["detail"]).startswith("clean (encrypted, not inspected)")
    assert not pipeline.receiver.received("/hook", name)


def test_an_executable_named_csv_is_blocked_and_a_real_csv_passes(pipeline: Pipeline,
                                                                 workdir: Path):
    disguised = f"report-{unique_name()}.csv"
    shutil.copyfile("/bin/true", workdir / disguised)
    honest = f"table-{unique_name()}.csv"
    (workdir / honest).write_text("id,name,amount\n1,acme,10.50\n2,beta,7.25\n")
    pipeline.upload(workdir, [f"put {disguised}", f"put {honest}"])

    wait_for("the real CSV in clean", pipeline.clean(honest).exists)
    record = pipeline.kept_out(disguised)
    assert record["verdict"] == "blocked"
    assert str(record["signature"]).startswith("ssftp.policy.filetype:application/")
    assert "allowedFileTypes" in str(record["detail"])
    wait_for("the policy webhook", lambda: pipeline.receiver.received("/hook", disguised))
    (request,) = pipeline.receiver.received("/hook", disguised)
    assert request.headers["X-Ssftp-Event"] == "virusFound"
    assert request.json()["reason"] == "policy"
    assert request.json()["verdict"] == "blocked"
