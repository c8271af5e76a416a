"""Engine creation and schema migrations (Alembic, applied programmatically)."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worpen_infra.sql.unit_of_work import translate


def create_engine(url: str, busy_timeout_ms: int = 5000) -> AsyncEngine:
    """An async engine; on SQLite, WAL mode, fsync on every commit (acknowledged means durable)
    and a busy timeout so concurrent writers wait instead of failing at once."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "worpen_infra.sql:migrations")
    config.attributes["connection"] = connection
    return config


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest migration (or to `revision`); creates everything on an empty
    database."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade)
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
