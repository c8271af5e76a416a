"""The storage every contract test runs against three times: the fakes, and the SQL adapter on a real
SQLite file and on a real PostgreSQL database (scripts/postgres-server.sh), each at the newest migration.

A test's database is a copy of one migrated once (per session for SQLite, per cluster for PostgreSQL):
what migrating an empty one would leave, in a fraction of the time, since the suite makes hundreds.
The migrations themselves have tests of their own (test_migrations.py)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract.migrated import MigratedUrl
from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.postgres_support import create_database
from worpen_api.bootstrap import StorageFactory
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest migration, for tests to copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade_database(engine)
        await engine.dispose()

    asyncio.run(migrate())
    return path


@pytest.fixture
def migrated_url(sqlite_template: Path, tmp_path: Path) -> MigratedUrl:
    async def make(backend: str, name: str) -> str:
        if backend == "postgresql":
            return await create_database(name, migrated=True)
        path = tmp_path / f"{name}.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"

    return make


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
async def uow(request: pytest.FixtureRequest, migrated_url: MigratedUrl) -> AsyncIterator[StorageFactory]:
    if request.param == "fake":
        yield FakeUnitOfWorkFactory()
        return
    engine = create_engine(await migrated_url(request.param, "contract"))
    yield SqlAlchemyUnitOfWorkFactory(engine)
    await engine.dispose()
