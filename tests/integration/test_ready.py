"""/ready, for load balancers: 200 only while the database answers at the schema this server needs, with
no credential; 503 naming the database otherwise (PostgreSQL stopped, a schema behind or ahead of the
server), back to 200 by itself once the database is, without restarting Worpen. /health stays 200
throughout: the server is alive, just not ready."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.integration.docker_support import wait_for
from tests.integration.support import WorpenServer, query, start_server
from tests.postgres_support import Cluster, create_database_sync

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 2.0
"""WORPEN_DATABASE_CONNECT_TIMEOUT of the servers here: /ready answers within it."""


def newest_migration() -> str:
    config = Config()
    config.set_main_option("script_location", "worpen_infra.sql:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorpenServer]:
    """A server on an SQLite file, and one on a PostgreSQL database, whatever the run's backend."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'worpen.db'}"
        if request.param == "sqlite"
        else create_database_sync("ready")
    )
    running = start_server(
        tmp_path / "worpen.db",
        {
            "WORPEN_DATABASE_URL": url,
            "WORPEN_DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            "WORPEN_DOCKER_HOSTS": "none",
        },
    )
    try:
        yield running
    finally:
        running.stop()


def test_ready_answers_200_without_a_credential_naming_the_backend_and_schema(server: WorpenServer) -> None:
    with server.client() as anonymous:
        response = anonymous.get("/ready")

    assert response.status_code == 200, response.text
    backend = "sqlite" if server.database_url.startswith("sqlite") else "postgresql"
    assert response.json() == {"status": "ready", "database": backend, "schema": newest_migration()}


def test_a_schema_behind_or_ahead_of_the_server_is_not_ready_and_says_which(server: WorpenServer) -> None:
    newest = newest_migration()
    with server.client() as anonymous:
        query(server.database_url, "UPDATE alembic_version SET version_num = '0006'")
        behind = anonymous.get("/ready")
        query(server.database_url, "UPDATE alembic_version SET version_num = '9999'")
        ahead = anonymous.get("/ready")
        query(server.database_url, f"UPDATE alembic_version SET version_num = '{newest}'")
        again = anonymous.get("/ready")
        health = anonymous.get("/health")

    assert behind.status_code == 503, behind.text
    assert behind.json()["code"] == "unavailable"
    assert behind.json()["detail"] == f"database unavailable: schema at 0006, this server needs {newest}"
    assert ahead.status_code == 503, ahead.text
    assert (
        ahead.json()["detail"] == f"database unavailable: schema at 9999, newer than this server's {newest}"
    )
    assert again.status_code == 200, again.text
    assert health.status_code == 200


def test_postgresql_stopped_is_503_naming_it_in_bounded_time_and_ready_again_once_it_is_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    server = start_server(
        tmp_path / "worpen.db",
        {
            "WORPEN_DATABASE_URL": cluster.create_database("ready"),
            "WORPEN_DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            "WORPEN_DOCKER_HOSTS": "none",
        },
    )
    try:
        with server.client() as anonymous:
            assert anonymous.get("/ready").status_code == 200

            cluster.stop()
            answers: list[tuple[httpx.Response, float]] = []
            for _ in range(3):  # the pooled connection's failure, then fresh connections refused
                began = time.monotonic()
                answers.append((anonymous.get("/ready"), time.monotonic() - began))
            health = anonymous.get("/health")

            cluster.start()
            wait_for(lambda: anonymous.get("/ready").status_code == 200, "/ready once PostgreSQL is back")
            assert server.process.poll() is None, "the same server throughout"
    finally:
        server.stop()

    for response, seconds in answers:
        assert response.status_code == 503, response.text
        assert response.json()["detail"].startswith("database unavailable: "), response.text
        assert seconds < CONNECT_TIMEOUT + 1.0
    assert health.status_code == 200
