"""deploy/systemd/ssftp.service: the sandbox the issue asks for, checked key by key, and the
unit as systemd itself reads it (``systemd-analyze verify``, and ``security`` for how exposed
the service is). What the unit does on reload (SIGHUP) is tested on a real server in
``test_cli.py``."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from deployments.cli import _parser
from ssftp.runtime.stop import STOP_SECONDS
from tests.support.cli import SSFTP
from tests.support.repo import REPO

UNIT = REPO / "deploy" / "systemd" / "ssftp.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
INSTALLED = "/opt/ssftp/bin/ssftp"


def settings(text: str) -> dict[str, dict[str, list[str]]]:
    """Each section's keys and their values in order (a key may be given more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_the_unit_sandboxes_ssftp_up_and_reloads_on_sighup():
    service = {key: values[-1] for key, values in settings(UNIT.read_text())["Service"].items()}
    command = shlex.split(service["ExecStart"])
    assert command[:2] == [INSTALLED, "up"]
    arguments = _parser().parse_args(command[1:])  # ssftp's own parser takes them
    data_dir = str(arguments.data_dir)
    assert data_dir == "/var/lib/ssftp" == service["Environment"].partition("=")[2]

    assert service["Type"] == "simple"
    assert service["User"] == service["Group"] == "ssftp"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # ssftp stops its own children; systemd waits for that stop's whole budget.
    assert service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) > STOP_SECONDS
    assert data_dir in service["ReadWritePaths"].split()
    assert service["StateDirectory"] == Path(data_dir).name
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectHome": "yes",
                       "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
                       "CapabilityBoundingSet": "", "SystemCallFilter": "@system-service"
                       }.items():
        assert service[key] == value, key


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze (systemd) is not installed")
def test_systemd_verifies_the_unit_and_rates_it_ok(tmp_path):
    """The unit with this checkout's ssftp in place of the installed one (verify wants the
    command to exist): no warning from ``verify``, and ``security`` rates its exposure OK
    (under 2 of 10; a service without a sandbox rates 9.6)."""
    assert SYSTEMD_ANALYZE
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, SSFTP))

    verified = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True,
                              text=True, timeout=60)
    assert verified.returncode == 0 and not verified.stdout + verified.stderr, (
        verified.stdout + verified.stderr)

    rated = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", str(unit)],
                           capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for ssftp\.service: (\d+\.\d+) (\w+)",
                      rated.stdout)
    assert level, rated.stdout + rated.stderr
    assert float(level[1]) < 2.0 and level[2] == "OK", level[0]
