"""Migrations on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.tables import LOGS_FULL_TEXT, described, metadata


async def test_migrations_create_the_schema_the_code_expects_on_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade_database(engine)
    await upgrade_database(engine)  # applying twice is a no-op

    def differences(connection: Connection) -> list[object]:
        # The full-text index is a virtual table that metadata cannot describe (tables.described).
        def include(name: str | None, kind: str, _parents: object) -> bool:
            return kind != "table" or name is None or described(name)

        context = MigrationContext.configure(connection, opts={"include_name": include})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []
    await engine.dispose()

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agents", "agent_samples", "api_keys", "alembic_version", LOGS_FULL_TEXT} <= tables
