"""Leases on SQLAlchemy Core: one row per lease, taken, renewed or refused by ONE upsert, so two replicas
racing for a free or expired lease never both win (PostgreSQL locks the row for the conflicting insert and
re-checks the condition on the newest version; SQLite has a single writer).

Expiry is judged by the database's clock on PostgreSQL (replicas' clocks differ), by the process clock on
SQLite (one machine).

On PostgreSQL the leader's lease has a connection of its own (`dedicated_engine`): a renewal waiting behind
requests for a pooled connection would lose the lease for nothing under heavy load."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, bindparam, case, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worpen_core.shared.errors import Unavailable
from worpen_core.shared.ports import Clock
from worpen_infra.sql.tables import leases
from worpen_infra.sql.unit_of_work import translate


def dedicated_engine(url: str, *, lease_seconds: float, connect_timeout: float) -> AsyncEngine:
    """A PostgreSQL engine with one connection, no overflow, for the lease alone: a renewal never waits
    behind requests. Its statements, and its wait to connect, give up after a third of a lease, so a
    renewal blocked in the database fails while the next bid can still renew in time."""
    limit = lease_seconds / 3
    return create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_pre_ping=True,
        pool_timeout=limit,
        connect_args={
            "timeout": min(connect_timeout, limit),
            "server_settings": {"statement_timeout": str(max(1, round(limit * 1000)))},
        },
    )


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
