"""A database that cannot be written (locked by another process: a writer on SQLite, a transaction holding
the tables on PostgreSQL) answers 503 naming it, and nothing acknowledged is lost: the heartbeat is
refused, not half-accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from tests.integration.support import database_url, writes_blocked
from worpen_api.app import create_app
from worpen_api.bootstrap import bootstrap
from worpen_api.settings import Settings
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory

pytestmark = pytest.mark.integration


async def test_a_locked_database_answers_503_naming_it_and_recovers(tmp_path: Path) -> None:
    url = database_url(tmp_path / "worpen.db")
    engine = create_engine(url, busy_timeout_ms=50, statement_timeout=0.5)
    await upgrade_database(engine)
    # The app serves from the test client's own event loop: asyncpg's connections belong to the loop that
    # opened them, so none opened here may be pooled for it.
    await engine.dispose()
    settings = Settings(auth=False, grpc_port=0, database_url=url)
    worpen = bootstrap(settings, uow=SqlAlchemyUnitOfWorkFactory(engine))
    # ...and the pool is emptied on the app's loop as it stops, where its connections were opened: closed
    # from the test's loop, asyncpg's sockets would be left for the garbage collector (a ResourceWarning
    # in whichever test runs next).
    worpen.on_stop.append(engine.dispose)
    app = create_app(worpen)
    beat = {"id": "bee-locked", "cpu": 1, "ram": 2}

    async with AsyncTestClient(app) as client:
        with writes_blocked(url):
            refused = await client.post("/api/v1/internal/heartbeat", json=beat)

        assert refused.status_code == 503
        assert refused.json()["detail"].startswith("database unavailable")
        assert (await client.get("/api/v1/agents/bee-locked")).status_code == 404

        accepted = await client.post("/api/v1/internal/heartbeat", json=beat)
        assert accepted.status_code == 202
        assert (await client.get("/api/v1/agents/bee-locked")).json()["status"] == "ONLINE"
