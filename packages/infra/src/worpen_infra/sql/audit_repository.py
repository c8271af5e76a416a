"""AuditRepository on SQLAlchemy Core."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.audit.model import AuditEntry, AuditQuery, Outcome
from worpen_infra.sql.tables import audit_log

ERROR_MAX_LENGTH = 4000


def _to_row(entry: AuditEntry) -> dict[str, Any]:
    """The table's columns are the entry's fields."""
    error = None if entry.error is None else entry.error[:ERROR_MAX_LENGTH]
    return {**dataclasses.asdict(entry), "outcome": entry.outcome.value, "error": error}


def _from_row(row: Row[Any]) -> AuditEntry:
    return AuditEntry(**{**row._mapping, "outcome": Outcome(row.outcome)})


class SqlAlchemyAuditRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, entry: AuditEntry) -> None:
        await self._connection.execute(insert(audit_log).values(_to_row(entry)))

    async def update(self, entry: AuditEntry) -> None:
        await self._connection.execute(
            update(audit_log).where(audit_log.c.id == entry.id).values(_to_row(entry))
        )

    async def query(self, query: AuditQuery) -> list[AuditEntry]:
        statement = select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id).limit(query.limit)
        if query.since is not None:
            statement = statement.where(audit_log.c.at >= query.since)
        if query.actor is not None:
            statement = statement.where(audit_log.c.actor == query.actor)
        if query.action is not None:
            statement = statement.where(audit_log.c.action == query.action)
        return [_from_row(row) for row in await self._connection.execute(statement)]
