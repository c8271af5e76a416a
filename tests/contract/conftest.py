"""The storage every contract test runs against twice: the fakes, and the SQL adapter on a real SQLite
file migrated to the newest schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_api.bootstrap import StorageFactory
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory


@pytest.fixture(params=["fake", "sqlite"])
async def uow(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    if request.param == "fake":
        yield FakeUnitOfWorkFactory()
        return
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}")
    await upgrade_database(engine)
    yield SqlAlchemyUnitOfWorkFactory(engine)
    await engine.dispose()
