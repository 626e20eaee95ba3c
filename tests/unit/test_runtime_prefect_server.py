"""ssftp.runtime.prefect_server: a Prefect server is known by its command line."""

from __future__ import annotations

from ssftp.runtime.prefect_server import is_prefect_server


def test_is_prefect_server_knows_the_server_by_its_command_line():
    python, script = "/venv/bin/python", "/venv/bin/prefect"
    assert is_prefect_server([python, script, "server", "start", "--port", "4200"])
    assert not is_prefect_server([python, script, "worker", "start"])
    assert not is_prefect_server([python, "/venv/bin/ssftp", "server", "start"])
