"""Whether this server can serve from its database: the database answers, and its schema is at the newest
migration this server knows. A load balancer asks (/ready) so that a replica that cannot reach the
database, or that runs on a schema not yet migrated to its version, is taken out of rotation instead of
answering 503s; /health stays liveness only."""

from __future__ import annotations

import asyncio

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from worpen_core.shared.errors import Unavailable
from worpen_infra.sql.unit_of_work import translate

MIGRATIONS = "worpen_infra.sql:migrations"


def _migrations() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return ScriptDirectory.from_config(config)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


class DatabaseReadiness:
    """Checks the database and its schema, within `timeout` seconds (the connect timeout): a probe that
    hangs is as useless to a load balancer as one that fails."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        self._engine = engine
        self._timeout = timeout
        migrations = _migrations()
        head = migrations.get_current_head()
        if head is None:
            raise RuntimeError(f"no migration in {MIGRATIONS}")
        self._head = head
        self._known = {script.revision for script in migrations.walk_revisions()}

    async def __call__(self) -> dict[str, str]:
        """The backend and the schema's revision when ready; Unavailable naming what is wrong otherwise."""
        try:
            async with asyncio.timeout(self._timeout):
                async with self._engine.connect() as connection:
                    revision = await connection.run_sync(_current_revision)
        except TimeoutError:
            raise Unavailable("database", f"no answer within {self._timeout:g} s") from None
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        except OSError as exc:  # a connection refused before the driver wrapped it
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc
        if revision is None:
            raise Unavailable("database", f"schema not migrated, this server needs {self._head}")
        if revision not in self._known:
            raise Unavailable("database", f"schema at {revision}, newer than this server's {self._head}")
        if revision != self._head:
            raise Unavailable("database", f"schema at {revision}, this server needs {self._head}")
        return {"database": self._engine.dialect.name, "schema": revision}
