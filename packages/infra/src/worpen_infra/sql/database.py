"""Engine creation and schema migrations (Alembic, applied programmatically)."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worpen_infra.sql.unit_of_work import translate


def create_engine(
    url: str,
    *,
    busy_timeout_ms: int = 5000,
    pool_size: int = 10,
    statement_timeout: float = 30.0,
    connect_timeout: float = 5.0,
) -> AsyncEngine:
    """An async engine.

    On SQLite: WAL mode, fsync on every commit (acknowledged means durable) and a busy timeout so
    concurrent writers wait instead of failing at once; the other settings do not apply (one file, no
    server). On PostgreSQL: `pool_size` connections kept open and as many more under bursts; a connection
    is pinged when taken from the pool, so one the server dropped (a restart, an idle timeout) is replaced
    there rather than failing the request it was taken for; connecting gives up after `connect_timeout`
    seconds, the server cancels a statement after `statement_timeout` (0: never), and a request waits for
    a free connection no longer than a statement may run. Each failure becomes Unavailable naming the
    database (503)."""
    if make_url(url).get_backend_name() == "postgresql":
        return _postgresql_engine(url, pool_size, statement_timeout, connect_timeout)
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


def _postgresql_engine(
    url: str, pool_size: int, statement_timeout: float, connect_timeout: float
) -> AsyncEngine:
    connect_args = {
        "timeout": connect_timeout,
        "server_settings": {"statement_timeout": str(round(statement_timeout * 1000))},
    }
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=statement_timeout if statement_timeout > 0 else 30.0,
        connect_args=connect_args,
    )


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "worpen_infra.sql:migrations")
    config.attributes["connection"] = connection
    return config


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest migration (or to `revision`); creates everything on an empty
    database. On PostgreSQL without the statement timeout: a migration rewriting a large table may take
    longer than any request should, and cancelled it would leave the replica unable to start."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            await connection.run_sync(upgrade)
    except (SQLAlchemyError, OSError) as exc:
        raise translate(exc) from exc
