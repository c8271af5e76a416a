"""Migrations on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from tests.postgres_support import create_database
from worpen_core.logs.model import LogQuery
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.tables import LOGS_DOCUMENT_INDEX, LOGS_FULL_TEXT, described, metadata
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory


def _differences(connection: Connection) -> list[object]:
    """What the migrated schema lacks or has beyond `metadata`, but for the full-text index, which
    metadata cannot describe (tables.described; tables.LOGS_DOCUMENT on PostgreSQL)."""

    def include(name: str | None, kind: str, _parents: object) -> bool:
        if name is None:
            return True
        if kind == "table":
            return described(name)
        return kind != "index" or name != LOGS_DOCUMENT_INDEX

    context = MigrationContext.configure(connection, opts={"include_name": include})
    return list(compare_metadata(context, metadata))


async def test_migrations_create_the_schema_the_code_expects_on_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade_database(engine)
    await upgrade_database(engine)  # applying twice is a no-op

    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
    await engine.dispose()

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agents", "agent_samples", "api_keys", "alembic_version", LOGS_FULL_TEXT} <= tables


async def test_migrations_create_the_schema_the_code_expects_on_an_empty_postgresql_database() -> None:
    engine = create_engine(await create_database("migrations"))
    await upgrade_database(engine)
    await upgrade_database(engine)  # applying twice is a no-op

    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
        types: dict[str, str] = dict(
            (
                await connection.execute(
                    text(
                        "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                        "WHERE (column_name = 'id' AND table_name IN ('events', 'logs', 'agent_samples')) "
                        "OR column_name IN ('payload', 'fields')"
                    )
                )
            ).all()
        )
        sequences: dict[str, str] = dict(
            (await connection.execute(text("SELECT sequencename, data_type::text FROM pg_sequences"))).all()
        )
        indexes = (
            await connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": LOGS_DOCUMENT_INDEX}
            )
        ).scalar_one()
    await engine.dispose()

    assert types == {
        "events.id": "bigint",
        "logs.id": "bigint",
        "agent_samples.id": "bigint",
        "events.payload": "jsonb",
        "logs.fields": "jsonb",
    }
    assert sequences["events_id_seq"] == sequences["logs_id_seq"] == "bigint"
    assert "USING gin" in indexes


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_rows_written_before_migration_0007_read_the_same_after_it(
    backend: str, tmp_path: Path
) -> None:
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else await create_database("m0007")
    )
    engine = create_engine(url)
    await upgrade_database(engine, "0006")
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO logs (timestamp, level, source, message, fields, size) "
                "VALUES ('2026-12-01 08:00:00', 'INFO', 'bee-001/web', 'disk full on /var/log', "
                """'{"path": "/var/log", "free": 0}', 10)"""
            )
        )
    await upgrade_database(engine)

    async with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
        [entry] = await tx.logs.query(LogQuery(text="/var/log"))
    await engine.dispose()
    assert (entry.id, entry.message, entry.fields) == (
        1,
        "disk full on /var/log",
        {"path": "/var/log", "free": 0},
    )


async def test_migrations_on_postgresql_are_not_cut_short_by_the_statement_timeout() -> None:
    """A migration rewriting a large table may run longer than a request may; the upgrade lifts the
    timeout for its own transaction only."""
    url = await create_database("slow")
    engine = create_engine(url, statement_timeout=0.05)
    async with engine.begin() as connection:  # creating the agents table takes 0.3 s
        await connection.execute(
            text(
                "CREATE FUNCTION slow_agents() RETURNS event_trigger AS $$ BEGIN "
                "IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands() "
                "WHERE command_tag = 'CREATE TABLE' AND object_identity = 'public.agents') "
                "THEN PERFORM pg_sleep(0.3); END IF; END $$ LANGUAGE plpgsql"
            )
        )
        await connection.execute(
            text("CREATE EVENT TRIGGER slow_agents ON ddl_command_end EXECUTE FUNCTION slow_agents()")
        )
    await upgrade_database(engine)

    async with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
        assert await tx.agents.get("bee-001") is None
    await engine.dispose()
