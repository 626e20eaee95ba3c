"""``ssftp quarantine list|release|delete`` as an operator runs them: a process against a data
root with a real clamd, its exit status, its one-line refusals, the audit log it leaves and
the ``released`` webhook a real receiver gets."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
from uuid import UUID

import pytest
from prefect.exceptions import NotPausedError
from prefect.flow_runs import resume_flow_run

from testkit.files import EICAR
from tests.support.cli import SSFTP, child_env, ssftp
from tests.support.config import write_config
from tests.support.logs import json_lines
from tests.support.quarantine import quarantined
from tests.support.scanning import files_under, sha256
from tests.support.waiting import wait_for

BENIGN = b"an invoice a signature once mistook for malware\n"


@pytest.fixture
def instance(tmp_path, layout, clamd, receiver):
    """The data root's own ssftp.yaml: the session's clamd and a ``released`` webhook."""
    write_config(layout.default_config, f"""
instanceName: gw-e2e
clamav:
  address: {clamd.socket}
users:
  stagingDir:
    - directory: acme
      auth: {{username: acme, password: pw}}
webhooks:
  - name: released
    url: {receiver.url}/released
""")
    return layout


def quarantine(*args: str, layout) -> object:
    return ssftp("quarantine", *args, "--data-dir", str(layout.root))


def operator() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def test_release_refuses_a_file_still_detected_and_moves_nothing(instance, client, audit_log):
    path = quarantined(instance, client, "acme/x.pdf", EICAR)

    result = quarantine("release", "quarantine/acme/x.pdf", "--reason", "sure?",
                        layout=instance)

    assert result.returncode == 1, result.stderr
    assert "Ssftp.Test.EICAR" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == EICAR
    assert files_under(instance.clean) == []


def test_force_releases_with_an_audit_record_and_a_delivered_webhook(instance, client,
                                                                      receiver, audit_log):
    path = quarantined(instance, client, "acme/x.pdf", EICAR)

    result = quarantine("release", "acme/x.pdf", "--reason", "vendor confirmed benign",
                        "--force", layout=instance)

    assert result.returncode == 0, result.stderr
    assert (instance.clean / "acme/x.pdf").read_bytes() == EICAR
    assert not path.exists()
    [history] = [p.name for p in files_under(instance.quarantine)]
    assert history.startswith("x.pdf.released-") and history.endswith(".verdict.json")
    [record] = [r for r in json_lines(audit_log) if r["event"] == "release"]
    assert (record["reason"], record["operator"], record["forced"]) == (
        "vendor confirmed benign", operator(), True)
    assert record["sha256"] == sha256(EICAR)
    [posted] = receiver.received("/released", "quarantine/acme/x.pdf")
    body = posted.json()
    assert (body["event"], body["reason"], body["operator"]) == (
        "released", "vendor confirmed benign", operator())
    assert body["destination"] == "clean/acme/x.pdf"
    history = ssftp("status", sha256(EICAR), "--data-dir", str(instance.root))
    assert [line.split()[1] for line in history.stdout.splitlines()] == ["scan", "release",
                                                                         "webhook"]


def test_a_false_positive_is_released_without_force(instance, client, audit_log):
    (instance.quarantine / "acme").mkdir()
    (instance.quarantine / "acme" / "invoice.pdf").write_bytes(BENIGN)

    result = quarantine("release", "acme/invoice.pdf", "--reason", "old signature",
                        layout=instance)

    assert result.returncode == 0, result.stderr
    assert (instance.clean / "acme/invoice.pdf").read_bytes() == BENIGN


def test_delete_is_audited_with_reason_and_operator(instance, client, audit_log):
    path = quarantined(instance, client, "acme/x.pdf", EICAR)

    result = quarantine("delete", "acme/x.pdf", "--reason", "confirmed malware",
                        layout=instance)

    assert result.returncode == 0, result.stderr
    assert files_under(instance.quarantine) == []
    assert not path.exists()
    [record] = [r for r in json_lines(audit_log) if r["event"] == "delete"]
    assert (record["reason"], record["operator"]) == ("confirmed malware", operator())


@pytest.mark.parametrize("name", ["../clean/x", "/etc/passwd", "acme/../../system/ssftp.yaml"])
def test_a_name_outside_quarantine_is_one_line_and_exit_2(instance, name):
    for action in ("release", "delete"):
        result = quarantine(action, name, "--reason", "r", layout=instance)
        assert result.returncode == 2
        assert result.stderr.startswith("ssftp quarantine:")
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_list_prints_json_lines_for_scripts(instance, client, audit_log):
    quarantined(instance, client, "acme/x.pdf", EICAR)

    result = quarantine("list", "--json", layout=instance)

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    entry = json.loads(line)
    assert entry["file"] == "quarantine/acme/x.pdf"
    assert (entry["account"], entry["sha256"]) == ("acme", sha256(EICAR))
    assert entry["signature"].startswith("Ssftp.Test.EICAR")


def test_with_approval_the_command_waits_for_the_approver_then_moves(instance, client,
                                                                      prefect_api, audit_log,
                                                                      started):
    path = quarantined(instance, client, "acme/x.pdf", EICAR)
    config = instance.default_config
    config.write_text(config.read_text() + "quarantine:\n  releaseApproval: true\n")
    process = subprocess.Popen(
        [SSFTP, "quarantine", "release", "acme/x.pdf", "--reason", "test file", "--force",
         "--data-dir", str(instance.root), "--prefect-url", prefect_api],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(), text=True)
    started.append(process)
    assert process.stdout is not None
    waiting = wait_for("the command to say where the run waits", lambda: next(
        (line for line in iter(process.stdout.readline, "") if "approval" in line), None))
    run_id = UUID(re.search(r"flow run ([0-9a-f-]{36})", waiting).group(1))
    assert path.exists()

    def resumed() -> bool:
        try:
            resume_flow_run(run_id, run_input={"approver": "bob", "approve": True})
        except NotPausedError:  # not paused yet: the run pauses after it said so
            return False
        return True

    wait_for("the paused run to take the approver's input", resumed)

    rest = process.stdout.read()
    assert process.wait(timeout=120) == 0, rest
    assert "released to clean/acme/x.pdf" in rest
    assert (instance.clean / "acme/x.pdf").read_bytes() == EICAR
    [record] = [r for r in json_lines(audit_log) if r["event"] == "release"]
    assert (record["approver"], record["operator"]) == ("bob", operator())


def test_with_approval_and_no_prefect_nothing_moves(instance, client, audit_log):
    path = quarantined(instance, client, "acme/x.pdf", EICAR)
    config = instance.default_config
    config.write_text(config.read_text() + "quarantine:\n  releaseApproval: true\n")

    result = quarantine("release", "acme/x.pdf", "--reason", "r", "--force", layout=instance)

    assert result.returncode == 2
    assert "releaseApproval" in result.stderr
    assert path.exists()


def test_a_release_run_without_a_verdict_is_one_line_also_with_force(instance, client,
                                                                     prefect_api, audit_log):
    path = quarantined(instance, client, "acme/x.pdf", EICAR)
    config = instance.default_config
    config.write_text(config.read_text().replace(str(client.address.unix_path),
                                                 "/nonexistent/clamd.sock"))

    result = quarantine("release", "acme/x.pdf", "--reason", "r", "--force", "--prefect-url",
                        prefect_api, layout=instance)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("ssftp quarantine: quarantine/acme/x.pdf "
                                                     "could not be rescanned")
    assert path.exists()
