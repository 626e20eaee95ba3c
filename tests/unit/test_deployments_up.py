"""``ssftp up`` sets PREFECT_API_URL once it knows its Prefect server, and Prefect reads its
settings once, as it loads: the command line that starts ``up`` must not load Prefect before.
And what it prints once it is up: the newcomer's next steps, the config file among them
(./run's is the data root's copy; a newcomer edited the tracked example instead), the runs
that found an infection, and the metrics URL when metrics are on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from deployments.up import _banner
from ssftp.config.reload import ConfigStore
from ssftp.layout import DataLayout
from ssftp.runtime.listener import MetricsListener
from ssftp.runtime.prefect_server import OURS, PrefectServer
from tests.support.config import write_config


@pytest.mark.parametrize("module", ["deployments.cli", "deployments.up"])
def test_starting_up_loads_no_prefect_before_its_api_url_is_set(module):
    """Seen failing: a module-level Prefect import in deployments.prefect_flush made every
    ``up`` worker start a temporary Prefect server of its own, beside the one it named."""
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(sorted(m for m in sys.modules "
         "if m == 'prefect' or m.startswith('prefect.')))"],
        capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    assert loaded == "[]"


CONFIG = """
    users:
      stagingDir:
        - directory: partner1
          auth:
            username: partner1
            password: "banner-test-pw"
    """


def _store(tmp_path: Path) -> ConfigStore:
    return ConfigStore.open(write_config(tmp_path / "ssftp.yaml", CONFIG),
                            DataLayout.at(tmp_path / "data"))


def _banner_of(store: ConfigStore, metrics_url: str | None) -> str:
    gateway: Any = SimpleNamespace(host="127.0.0.1", port=2002)
    prefect = PrefectServer("http://127.0.0.1:4200/api", OURS)
    return _banner(store, gateway, prefect, metrics_url)


def test_the_banner_names_the_config_file_and_the_data_root(tmp_path: Path) -> None:
    store = _store(tmp_path)
    banner = _banner_of(store, None)
    assert f"  config:    {store.path} (changes apply while ssftp runs)" in banner
    assert f"  data root: {tmp_path / 'data'}" in banner
    assert "sftp -P 2002 partner1@127.0.0.1" in banner
    assert "metrics" not in banner  # off


def test_the_banner_links_the_runs_that_found_an_infection(tmp_path: Path) -> None:
    """The scan and rescan runs tagged ``infected`` (flows.scan), in the runs list of Prefect's
    default UI; tests/e2e/test_cli_pipeline.py opens it on a real server."""
    assert ("  infected:  http://127.0.0.1:4200/v2/runs?tags=infected (alerts: `ssftp "
            "automations install --webhook URL`)") in _banner_of(_store(tmp_path), None)


def test_the_banner_gives_the_metrics_url_when_metrics_are_on(tmp_path: Path) -> None:
    listener = MetricsListener(("127.0.0.1", 0), {})
    try:
        url = listener.url
        assert url == f"http://127.0.0.1:{listener.port}/metrics"
        assert f"  metrics:   {url} (and /healthz)" in _banner_of(_store(tmp_path), url)
    finally:
        listener.stop()
