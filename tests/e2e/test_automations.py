"""``ssftp automations install|list`` as an operator runs it, against the session's Prefect test
harness (a real Prefect server): one line saying created or updated, the webhook's URL never
shown, and every mistake one line and exit 2, before Prefect is ever asked when it is one of
the command line. What the automation is and does:
tests/integration/test_deployments_automations.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from tests.support.cli import child_env, ssftp
from tests.support.config import write_config
from tests.support.gateway import unique_name
from tests.support.scanning import free_closed_port

TOKEN = "s3cret-token-4711"


def config_of(tmp_path: Path, instance: str) -> Path:
    return write_config(tmp_path / "ssftp.yaml", f"instanceName: {instance}\n")


def one_line_error(result: subprocess.CompletedProcess[str], start: str) -> str:
    """The one stderr line of a failed command, which starts with ``start``; no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(start), line
    assert result.stdout == ""
    return line


async def automation_ids(name: str) -> list[str]:
    async with get_client() as client:
        return [str(found.id) for found in await client.read_automations_by_name(name)]


def test_install_twice_says_created_then_updated_and_never_shows_the_url(prefect_api,
                                                                         tmp_path):
    instance = unique_name()
    config = config_of(tmp_path, instance)
    url = f"http://127.0.0.1:9/hooks/infected?token={TOKEN}"
    first = ssftp("automations", "install", "--webhook", url, "--config", str(config),
                  "--prefect-url", prefect_api)
    # The URL from stdin, as an operator keeps it out of shell history; PREFECT_API_URL.
    second = ssftp("automations", "install", "--webhook", "-", "--config", str(config),
                   env=child_env(PREFECT_API_URL=prefect_api), input=url + "\n")
    outputs = []
    for result, verb in ((first, "created"), (second, "updated")):
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
        (line,) = result.stdout.splitlines()
        match = re.fullmatch(rf"{verb} automation 'ssftp infected file on {instance}' "
                             rf"\(id ([0-9a-f-]+)\): call-webhook through block "
                             rf"webhook/ssftp-infected-{instance}", line)
        assert match, line
        outputs.append(match.group(1))
        assert TOKEN not in result.stdout + result.stderr
    assert outputs[0] == outputs[1]
    assert asyncio.run(automation_ids(f"ssftp infected file on {instance}")) == outputs[:1]
    listed = ssftp("automations", "list", "--prefect-url", prefect_api)
    assert listed.returncode == 0, listed.stderr
    assert (f"ssftp infected file on {instance}  {outputs[0]}  enabled  call-webhook"
            in listed.stdout.splitlines())


def test_without_a_prefect_api_it_says_so_and_starts_no_server_of_its_own(tmp_path):
    """Prefect's client alone would quietly start a temporary server and install there."""
    result = ssftp("automations", "install", "--webhook", "http://127.0.0.1:9/x",
                   "--config", str(config_of(tmp_path, "gw-1")))
    one_line_error(result, "ssftp automations: no Prefect API: pass --prefect-url URL or set "
                           "PREFECT_API_URL")


def test_a_prefect_server_that_does_not_answer_is_one_line(tmp_path):
    api = f"http://127.0.0.1:{free_closed_port()}/api"
    result = ssftp("automations", "install", "--webhook", "http://127.0.0.1:9/x",
                   "--config", str(config_of(tmp_path, "gw-1")), "--prefect-url", api)
    one_line_error(result, f"ssftp automations: no Prefect server answers at {api}")


@pytest.mark.parametrize("url", [f"ftp://hooks.example.com/{TOKEN}",
                                 f"https://hooks.example.com/a b?{TOKEN}",
                                 f"https:///{TOKEN}"])
def test_an_invalid_webhook_url_is_one_line_that_does_not_repeat_it(tmp_path, url):
    result = ssftp("automations", "install", "--webhook", url,
                   "--config", str(config_of(tmp_path, "gw-1")))
    line = one_line_error(result, "ssftp automations: --webhook: must be an http:// or "
                                  "https:// URL with a host")
    assert TOKEN not in line


def test_a_missing_block_is_one_line(prefect_api, tmp_path):
    missing = f"no-such-{unique_name()}"
    result = ssftp("automations", "install", "--block", missing, "--config",
                   str(config_of(tmp_path, unique_name())), "--prefect-url", prefect_api)
    one_line_error(result, f"ssftp automations: --block {missing!r}: no such block on the "
                           "Prefect server")


def test_without_a_config_it_names_the_file_and_the_way_out(tmp_path):
    result = ssftp("automations", "install", "--block", "alerts",
                   "--data-dir", str(tmp_path / "data"))
    one_line_error(result, f"ssftp automations: no config file at "
                           f"{tmp_path / 'data' / 'system' / 'ssftp.yaml'}: ")
    assert "--all-instances" in result.stderr
