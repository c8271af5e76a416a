"""The storage every contract test runs against three times: the fakes, and the SQL adapter on a real
SQLite file and on a real PostgreSQL database (scripts/postgres-server.sh), each migrated to the newest
schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.postgres_support import create_database
from worpen_api.bootstrap import StorageFactory
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
async def uow(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    if request.param == "fake":
        yield FakeUnitOfWorkFactory()
        return
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}"
    else:
        url = await create_database("contract")
    engine = create_engine(url)
    await upgrade_database(engine)
    yield SqlAlchemyUnitOfWorkFactory(engine)
    await engine.dispose()
