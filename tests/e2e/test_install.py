"""ssftp as a user installs it: ``pip install .`` into a new virtual environment outside the
checkout, then ``ssftp up`` from another directory.

Run from a checkout, a missing ``__init__.py`` or a data file found through the source tree
(clamd.conf, the test signatures) goes unnoticed; here nothing of the checkout is on the path.
The source is copied first, so a stale ``build/`` of the checkout cannot slip old modules in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.openssh_server import free_port
from tests.support.cli import child_env
from tests.support.config import write_config
from tests.support.repo import REPO
from tests.support.up import (
    launch_up,
    shut_down,
    up_config,
    upload_samples,
    wait_until_scanned,
    wait_until_up,
)

NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "var", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache", ".mypy_cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin/`` of a new venv with ssftp installed from a copy of this checkout."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
         "-c", str(source / "constraints.txt"), str(source)],
        cwd=root, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    shutil.rmtree(source)  # nothing may be left to find there
    return venv / "bin"


def run_installed(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=child_env())


def test_installed_packages_come_from_the_venv_and_tools_stay_behind(installed, tmp_path):
    probe = ("import importlib.util, ssftp, server, client, flows, deployments\n"
             "print(ssftp.__file__)\n"
             "print([n for n in ('tests', 'bench', 'testkit') if importlib.util.find_spec(n)])")
    result = run_installed(installed, "python", "-c", probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    where, tools = result.stdout.splitlines()
    assert Path(where).is_relative_to(installed.parent), where
    assert tools == "[]"


def test_installed_console_script_knows_its_version(installed, tmp_path):
    result = run_installed(installed, "ssftp", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ssftp 0.1.0"


def test_installed_ssftp_up_scans_with_its_packaged_clamd_files(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    config = write_config(tmp_path / "ssftp.yaml", up_config())
    sftp_port, prefect_port = free_port(), free_port()
    instance = launch_up(work, config, tmp_path / "data", sftp_port, prefect_port,
                         command=str(installed / "ssftp"))
    try:
        wait_until_up(instance)
        client = tmp_path / "client"
        client.mkdir()
        uploaded = upload_samples(instance, client)
        wait_until_scanned(instance, uploaded)
        # Its clamd loads the data root's own database, seeded from the test signatures
        # shipped inside the installed package.
        database = instance.data / "system" / "clamav"
        clamd_conf = (instance.data / "system" / "clamd" / "clamd.conf").read_text()
        assert f"DatabaseDirectory {database}" in clamd_conf
        assert {"ssftp-test.hdb", "ssftp-test.ndb"} <= {p.name for p in database.iterdir()}
    finally:
        shut_down(instance)
    assert instance.proc.returncode == 0, instance.tail()
