"""The unit tier starts no daemon: the fixtures of the root conftest that would start one
(a real clamd, the Prefect test harness, the SFTP gateway) fail here instead, naming where
the test belongs. A unit test of the scan path talks to :mod:`testkit.fake_clamd`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.fake_clamd import FakeClamd


def _refused(what: str) -> None:
    pytest.fail(f"a unit test starts no {what}: use testkit.fake_clamd or a fake of your own, "
                "or move the test to tests/integration/ (tests/README.md)")


@pytest.fixture
def clamd() -> None:
    _refused("clamd")


@pytest.fixture
def own_clamd() -> None:
    _refused("clamd")


@pytest.fixture
def client() -> None:
    _refused("clamd (the client fixture talks to the session's real clamd)")


@pytest.fixture
def prefect_api() -> None:
    _refused("Prefect server")


@pytest.fixture
def gateway() -> None:
    _refused("SFTP server")


@pytest.fixture
def fake_clamd() -> Iterator[FakeClamd]:
    """A fake clamd on a Unix socket of its own, answering as clamd does until the test sets
    its ``answer``."""
    with FakeClamd() as fake:
        yield fake
