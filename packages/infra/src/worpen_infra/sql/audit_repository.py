"""AuditRepository on SQLAlchemy Core."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.audit.model import AuditEntry, AuditQuery, Outcome
from worpen_infra.sql.tables import audit_log

ERROR_MAX_LENGTH = 4000


def _to_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "actor_key_id": entry.actor_key_id,
        "action": entry.action,
        "target": entry.target,
        "node": entry.node,
        "outcome": entry.outcome.value,
        "error": None if entry.error is None else entry.error[:ERROR_MAX_LENGTH],
        "finished_at": entry.finished_at,
    }


def _from_row(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        actor_key_id=row.actor_key_id,
        action=row.action,
        target=row.target,
        node=row.node,
        outcome=Outcome(row.outcome),
        error=row.error,
        finished_at=row.finished_at,
    )


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
