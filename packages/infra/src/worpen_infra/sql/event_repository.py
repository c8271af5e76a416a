"""EventRepository on SQLAlchemy Core: the journal, an append-only table numbered by the database."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.events.model import EventRecord, RecordedEvent
from worpen_infra.sql.dialects import JOURNAL, serialize_appends
from worpen_infra.sql.tables import events


def _from_row(row: Row[Any]) -> RecordedEvent:
    return RecordedEvent(**row._mapping)


def _of_types(statement: Select[Any], types: frozenset[str] | None) -> Select[Any]:
    return statement if types is None else statement.where(events.c.type.in_(sorted(types)))


class SqlAlchemyEventRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def append(self, records: Sequence[EventRecord]) -> list[int]:
        if not records:
            return []
        await serialize_appends(self._connection, JOURNAL)
        statement = insert(events).returning(events.c.id, sort_by_parameter_order=True)
        result = await self._connection.execute(statement, [dataclasses.asdict(record) for record in records])
        return list(result.scalars())

    async def after(self, after: int, limit: int, types: frozenset[str] | None = None) -> list[RecordedEvent]:
        statement = select(events).where(events.c.id > after).order_by(events.c.id).limit(limit)
        return [_from_row(row) for row in await self._connection.execute(_of_types(statement, types))]

    async def latest(self, limit: int, types: frozenset[str] | None = None) -> list[RecordedEvent]:
        statement = _of_types(select(events).order_by(events.c.id.desc()).limit(limit), types)
        return [_from_row(row) for row in reversed((await self._connection.execute(statement)).all())]

    async def prune(self, before: datetime, limit: int) -> int:
        doomed = select(events.c.id).where(events.c.at < before).order_by(events.c.id).limit(limit)
        result = await self._connection.execute(
            delete(events).where(events.c.id.in_(doomed.scalar_subquery()))
        )
        return int(result.rowcount)
