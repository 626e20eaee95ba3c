"""``ssftp up`` sets PREFECT_API_URL once it knows its Prefect server, and Prefect reads its
settings once, as it loads: the command line that starts ``up`` must not load Prefect before."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["deployments.cli", "deployments.up"])
def test_starting_up_loads_no_prefect_before_its_api_url_is_set(module):
    """Seen failing: a module-level Prefect import in deployments.prefect_flush made every
    ``up`` worker start a temporary Prefect server of its own, beside the one it named."""
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(sorted(m for m in sys.modules "
         "if m == 'prefect' or m.startswith('prefect.')))"],
        capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    assert loaded == "[]"
