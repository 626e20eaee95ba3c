"""``ssftp status PATH|SHA256`` as a user runs it: over one and two data roots, a log
destination outside the data root, hostile names escaped, a reader that goes away, and the
files of a real gateway. The history itself (ssftp.audit_history) is in
tests/unit/test_audit_history.py."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.files import EICAR, make_random_file, sha256_file
from tests.support.audit_log import (
    SHA_X,
    SHA_Y,
    X_EVENTS,
    chained,
    events,
    others,
    scan,
    write_log,
    x_history,
)
from tests.support.cli import SSFTP
from tests.support.config import write_config
from tests.support.gateway import unique_name
from tests.support.logs import wait_for_log
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.sftp import sftp_as
from tests.support.waiting import wait_for


def ssftp_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSFTP, "status", *args], capture_output=True, text=True, timeout=60)


def test_status_command(tmp_path):
    write_log(tmp_path, [*x_history(tmp_path), *others(tmp_path)])
    data = ["--data-dir", str(tmp_path)]

    text = ssftp_status("clean/acme/in/x.dat", *data)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [event for event, _ in X_EVENTS]
    assert "verdict=clean" in lines[2] and "flow_run_id=run-2" in lines[2]

    as_json = ssftp_status(SHA_Y, "--json", *data)
    assert as_json.returncode == 0, as_json.stderr
    assert events(json.loads(as_json.stdout)) == [("scan", "infected"), ("webhook", None)]

    missing = ssftp_status("acme/in/z.dat", *data)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == (f"ssftp status: no audit record of acme/in/z.dat (searched the "
                              f"audit log of {tmp_path})\n")  # it said nothing before
    assert json.loads(ssftp_status("acme/in/z.dat", "--json", *data).stdout) == []

    for args, reason in [(["x.dat", *data], "neither a sha256 nor a path"),
                         ([SHA_X[:12], *data], "give more digits"),
                         (["acme/x", "--data-dir", str(tmp_path / "none")], "no data dir at"),
                         (["acme/x", "--data-dir", str(tmp_path / "log")], "no audit.log in")]:
        bad = ssftp_status(*args)
        assert bad.returncode == 2 and bad.stderr.startswith("ssftp status: ")
        assert reason in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_status_shows_hostile_names_escaped(tmp_path):
    """Partners choose the names in the audit log: a terminal escape (ESC, BEL, the C1 CSI)
    and a byte that is not UTF-8 (its JSON has ``\\udcff``) are shown escaped, by path and
    by sha256, and the text never raises."""
    name = "acme/in/\x1b]0;PWNED\x07-\x9b31m-\udcff.dat"
    write_log(tmp_path, [scan(tmp_path, name, SHA_X, "infected", f"quarantine/{name}",
                              signature="Eicar-Test-Signature")])
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    for asked in (SHA_X, f"quarantine/{name}"):
        result = subprocess.run([SSFTP, "status", os.fsencode(asked), "--data-dir",
                                 str(tmp_path)], capture_output=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        for control in (b"\x1b", b"\x07", b"\x9b", b"\xc2\x9b"):
            assert control not in result.stdout + result.stderr
        assert b' file="acme/in/\\x1b]0;PWNED\\x07-\\x9b31m-\\xff.dat" ' in result.stdout


def test_status_command_over_two_data_dirs(tmp_path):
    chained(tmp_path / "a", tmp_path / "b")
    data = ["--data-dir", str(tmp_path / "a"), "--data-dir", str(tmp_path / "b")]
    both = ssftp_status(SHA_X, *data)
    assert both.returncode == 0, both.stderr
    assert [line.split()[1] for line in both.stdout.splitlines()] == [
        "download", "scan", "scan", "webhook", "upload", "scan", "webhook"]
    # Without a config, a record that names no instance gets the name the others give.
    assert both.stdout.splitlines()[-1].endswith("instance=b")

    bad = ssftp_status(SHA_X, *data, "--config", str(tmp_path / "a.yaml"))
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    assert "--config goes with one --data-dir" in bad.stderr


def test_a_reader_that_goes_away_is_not_an_error(tmp_path):
    """``ssftp status ... | head -n 1``: on main, 'ssftp status: [Errno 32] Broken pipe' and
    exit 2 once the history outgrew the pipe."""
    write_log(tmp_path, [scan(tmp_path, "acme/in/x.dat", SHA_X, "error", "staging/acme/in/x.dat")
                         for _ in range(5000)])
    piped = subprocess.run(
        ["bash", "-c", f"{shlex.quote(SSFTP)} status acme/in/x.dat --data-dir "
                       f"{shlex.quote(str(tmp_path))} | head -n 1; exit ${{PIPESTATUS[0]}}"],
        capture_output=True, text=True, timeout=60)
    assert (piped.returncode, piped.stderr) == (0, "")
    assert len(piped.stdout.splitlines()) == 1


def test_status_reads_a_log_dest_when_the_data_root_has_no_log(tmp_path):
    """A split deployment: the audit log shipped to a logDests file destination."""
    shipped = tmp_path / "shipped"
    write_log(shipped, x_history(tmp_path))
    config = write_config(tmp_path / "ssftp.yaml", f"""
    logDests:
      - kind: file
        props:
          path: {shipped / "log"}
    """)
    data = ["--data-dir", str(tmp_path), "--config", str(config)]
    found = ssftp_status("acme/in/x.dat", *data)
    assert found.returncode == 0, found.stderr
    assert len(found.stdout.splitlines()) == len(X_EVENTS)
    missing = ssftp_status("acme/in/x.dat", "--data-dir", str(tmp_path))
    assert missing.returncode == 2 and "no audit.log in" in missing.stderr


# --- end to end: the records a real gateway wrote (sftp uploads, clamd, Prefect, webhooks) ---


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("status")) as stack:
        yield stack


def test_status_of_files_through_a_real_gateway(pipeline: Pipeline, workdir: Path):
    (workdir / "eicar.com").write_bytes(EICAR)
    make_random_file(workdir / "report.csv", 10_000)
    pipeline.upload(workdir, ["mkdir in", "put eicar.com in/eicar.com",
                              "put report.csv in/report.csv"])
    infected = "partner-a/in/eicar.com"
    wait_for("both virusFound webhooks settled in the audit log",
             lambda: len([r for r in pipeline.audit() if r["event"] == "webhook"
                          and r["file"] == infected]) == 2)
    wait_for("report.csv in clean", pipeline.clean("in/report.csv").exists)
    data = ["--data-dir", str(pipeline.layout.root), "--config", str(pipeline.config)]

    by_sha = ssftp_status(hashlib.sha256(EICAR).hexdigest(), "--json", *data)
    assert by_sha.returncode == 0, by_sha.stderr
    scan_record, *webhooks = json.loads(by_sha.stdout)
    assert (scan_record["verdict"], scan_record["destination"]) == (
        "infected", f"quarantine/{infected}")
    assert scan_record["signature"].endswith(".UNOFFICIAL") and scan_record["flow_run_id"]
    assert sorted(hook["delivered"] for hook in webhooks) == [False, True]

    by_path = ssftp_status(f"quarantine/{infected}", *data)
    assert by_path.returncode == 0, by_path.stderr
    assert [line.split()[1] for line in by_path.stdout.splitlines()] == [
        "scan", "webhook", "webhook"]
    assert f"signature={scan_record['signature']}" in by_path.stdout

    clean = ssftp_status("clean/partner-a/in/report.csv", *data)
    assert clean.returncode == 0, clean.stderr
    assert "verdict=clean" in clean.stdout
    assert f"sha256={sha256_file(workdir / 'report.csv')}" in clean.stdout


async def test_a_consumer_s_download_and_delete_are_in_the_file_s_history(gateway):
    """Audited by the server, named as the scan names the file (before: in no log at all,
    and `ssftp status` still showed the file in clean/)."""
    name = f"taken-{unique_name()}.csv"
    (gateway.layout.clean / "partner-a" / name).write_bytes(b"a,b\n")
    async with sftp_as(gateway, "consumer-a") as sftp, sftp.open(name, "rb") as file:
        assert await file.read() == b"a,b\n"
    async with sftp_as(gateway, "clean-admin") as sftp:
        await sftp.remove(f"partner-a/{name}")
    data_name = f"clean/partner-a/{name}"
    fetched = wait_for_log(gateway.layout.log, lambda entry: entry.get("event") == "fetch"
                           and entry.get("file") == data_name, filename="audit.log")
    assert (fetched["user"], fetched["bytes"], fetched["ip"]) == ("consumer-a", 4, "127.0.0.1")
    deleted = wait_for_log(gateway.layout.log, lambda entry: entry.get("event") == "delete"
                           and entry.get("file") == data_name, filename="audit.log")
    assert (deleted["user"], deleted["size"]) == ("clean-admin", 4)
    history = ssftp_status(f"partner-a/{name}", "--data-dir", str(gateway.layout.root))
    assert history.returncode == 0, history.stderr
    assert [line.split()[1] for line in history.stdout.splitlines()] == ["fetch", "delete"]
