"""The failed authentications of every replica (core FailedAuthLog) on SQLAlchemy Core. Written only when
an authentication fails, in one short transaction that also forgets the failures past the window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from worpen_core.shared.errors import Unavailable
from worpen_infra.sql.tables import auth_failures
from worpen_infra.sql.unit_of_work import translate


class SqlAlchemyFailedAuthLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(
        self, client: str, at: datetime, since: datetime, most: int, *, keep_since: datetime
    ) -> list[datetime]:
        # Rows another replica is deleting are skipped (SKIP LOCKED on PostgreSQL): they go either way,
        # and two failures never wait on each other's cleanup.
        past = (
            select(auth_failures.c.id)
            .where(auth_failures.c.at <= keep_since)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        recent = (
            select(auth_failures.c.at)
            .where(auth_failures.c.client == client, auth_failures.c.at > since)
            .order_by(auth_failures.c.at.desc())
            .limit(most)
        )
        try:
            async with self._engine.begin() as connection:
                await connection.execute(delete(auth_failures).where(auth_failures.c.id.in_(past)))
                await connection.execute(insert(auth_failures).values(client=client, at=at))
                return list((await connection.execute(recent)).scalars())
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        except OSError as exc:  # a connection the driver lost before SQLAlchemy could wrap the error
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc

    async def count_since(self, since: datetime) -> int:
        try:
            async with self._engine.connect() as connection:
                counted = select(func.count()).select_from(auth_failures).where(auth_failures.c.at > since)
                return int((await connection.execute(counted)).scalar_one())
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        except OSError as exc:
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc
