"""The terminal session slots of every replica (core SessionSlots) on SQLAlchemy Core. A take counts and
inserts in one transaction under a transaction-long advisory lock on PostgreSQL, so two replicas can never
both take the last slot (SQLite has a single writer, and one process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import BigInteger, bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worpen_core.containers.ports import SessionSlot, SlotsInUse
from worpen_core.shared.errors import Unavailable
from worpen_infra.sql.tables import session_slots
from worpen_infra.sql.unit_of_work import translate

SESSION_SLOTS = 0x574F_5250_0011
"""The advisory lock every take of a slot holds until it commits."""

_lock = select(func.pg_advisory_xact_lock(bindparam("family", SESSION_SLOTS, type_=BigInteger)))


class SqlAlchemySessionSlots:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def take(
        self, slot: SessionSlot, *, per_key: int, total: int, fresh_since: datetime
    ) -> SlotsInUse | None:
        in_use = select(
            func.count(),
            func.coalesce(func.sum(case((session_slots.c.key_id == slot.key_id, 1), else_=0)), 0),
        )
        async with _transaction(self._engine) as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(_lock)
            # Slots their replica stopped renewing (it died) go: they count no more.
            await connection.execute(delete(session_slots).where(session_slots.c.renewed_at < fresh_since))
            all_open, of_key = (await connection.execute(in_use)).one()
            if of_key >= per_key or all_open >= total:
                return SlotsInUse(int(of_key), int(all_open))
            await connection.execute(
                insert(session_slots).values(
                    id=slot.id, key_id=slot.key_id, replica_id=slot.replica_id, renewed_at=slot.renewed_at
                )
            )
            return None

    async def give_back(self, slot_id: str) -> None:
        async with _transaction(self._engine) as connection:
            await connection.execute(delete(session_slots).where(session_slots.c.id == slot_id))

    async def renew(self, replica_id: str, held: Collection[str], at: datetime) -> None:
        mine = session_slots.c.replica_id == replica_id
        ids = list(held)
        async with _transaction(self._engine) as connection:
            if ids:
                await connection.execute(
                    update(session_slots).where(mine, session_slots.c.id.in_(ids)).values(renewed_at=at)
                )
            await connection.execute(
                delete(session_slots).where(
                    mine, session_slots.c.id.not_in(ids), session_slots.c.renewed_at < at
                )
            )

    async def forget_replica(self, replica_id: str) -> None:
        async with _transaction(self._engine) as connection:
            await connection.execute(delete(session_slots).where(session_slots.c.replica_id == replica_id))


@asynccontextmanager
async def _transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.begin()`, with database errors translated to core errors."""
    try:
        async with engine.begin() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    except OSError as exc:  # a connection the driver lost before SQLAlchemy could wrap the error
        raise Unavailable("database", str(exc) or type(exc).__name__) from exc
