"""Leases on SQLAlchemy Core: one row per lease, taken, renewed or refused by ONE upsert, so two replicas
racing for a free or expired lease never both win (PostgreSQL locks the row for the conflicting insert and
re-checks the condition on the newest version; SQLite has a single writer).

Expiry is judged by the database's clock on PostgreSQL (replicas' clocks differ), by the process clock on
SQLite (one machine)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, bindparam, case, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from worpen_core.shared.errors import Unavailable
from worpen_core.shared.ports import Clock
from worpen_infra.sql.tables import leases
from worpen_infra.sql.unit_of_work import translate


class SqlAlchemyLeases:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._postgresql = engine.dialect.name == "postgresql"

    def _now(self) -> ColumnElement[Any]:
        if self._postgresql:
            return func.timezone("UTC", func.now())
        return bindparam("now", self._clock.now(), type_=leases.c.expires_at.type)

    async def hold(self, name: str, holder: str, ttl: timedelta) -> int | None:
        now = self._now()
        expires = (
            now + bindparam("ttl", ttl, type_=Interval)
            if self._postgresql
            else bindparam("expires", self._clock.now() + ttl, type_=leases.c.expires_at.type)
        )
        insert = (postgresql.insert if self._postgresql else sqlite.insert)(leases)
        proposed = insert.values(name=name, holder=holder, token=1, expires_at=expires)
        taken = proposed.excluded
        statement = proposed.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={
                "holder": taken.holder,
                "token": case((leases.c.holder == taken.holder, leases.c.token), else_=leases.c.token + 1),
                "expires_at": taken.expires_at,
            },
            where=or_(leases.c.holder == taken.holder, leases.c.expires_at <= now),
        ).returning(leases.c.token)
        try:
            async with self._engine.begin() as connection:
                token: int | None = (await connection.execute(statement)).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        except OSError as exc:  # a connection the driver lost before SQLAlchemy could wrap the error
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc
        return token

    async def release(self, name: str, holder: str) -> None:
        """Expire the lease now: another holder takes it at once, with a new token."""
        statement = (
            update(leases)
            .where(leases.c.name == name, leases.c.holder == holder)
            .values(expires_at=self._now())
        )
        try:
            async with self._engine.begin() as connection:
                await connection.execute(statement)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        except OSError as exc:
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc
