"""ssftp.runtime.prefect_server: a Prefect server is known by its command line; the database
of the one ``ssftp up`` starts is known from its environment."""

from __future__ import annotations

import socket

import pytest

from ssftp.errors import PrefectServerError
from ssftp.runtime.prefect_server import database_of, is_prefect_server
from ssftp.scan.queue import PrefectDatabase


def test_is_prefect_server_knows_the_server_by_its_command_line():
    python, script = "/venv/bin/python", "/venv/bin/prefect"
    assert is_prefect_server([python, script, "server", "start", "--port", "4200"])
    assert not is_prefect_server([python, script, "worker", "start"])
    assert not is_prefect_server([python, "/venv/bin/ssftp", "server", "start"])


def test_the_database_of_our_server_is_sqlite_unless_the_environment_names_another():
    assert database_of({}) is PrefectDatabase.SQLITE
    assert database_of({"PREFECT_API_DATABASE_CONNECTION_URL":
                        "sqlite+aiosqlite:////srv/prefect.db"}) is PrefectDatabase.SQLITE


def test_a_postgresql_that_answers_is_our_servers_database():
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        url = f"postgresql+asyncpg://prefect:secret@127.0.0.1:{port}/prefect"
        assert database_of({"PREFECT_API_DATABASE_CONNECTION_URL": url}) \
            is PrefectDatabase.POSTGRESQL
        # Prefect's own name for it wins over the older one, as in Prefect.
        assert database_of({"PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
                            "PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///x"}) \
            is PrefectDatabase.POSTGRESQL


def test_a_postgresql_that_does_not_answer_is_one_line_without_the_password():
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
    url = f"postgresql+asyncpg://prefect:s3cret@127.0.0.1:{port}/prefect"
    with pytest.raises(PrefectServerError) as refused:
        database_of({"PREFECT_API_DATABASE_CONNECTION_URL": url})
    message = str(refused.value)
    assert f"PostgreSQL at 127.0.0.1:{port} does not answer" in message
    assert "PREFECT_API_DATABASE_CONNECTION_URL" in message
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize("url", ["mysql://u:s3cret@db/prefect", "postgresql://u:s3cret@db/x",
                                 "no scheme at all"])
def test_a_database_url_prefects_server_cannot_use_is_refused_before_it_starts(url):
    with pytest.raises(PrefectServerError, match="takes postgresql\\+asyncpg://") as refused:
        database_of({"PREFECT_API_DATABASE_CONNECTION_URL": url})
    assert "s3cret" not in str(refused.value)
