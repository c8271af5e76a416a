"""IncidentRepository on SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.incidents.model import (
    Incident,
    IncidentQuery,
    IncidentStatus,
    ResolutionMethod,
    Severity,
    TimelineEntry,
    TimelineKind,
)
from worpen_core.shared.errors import Conflict
from worpen_infra.sql.tables import incident_timeline, incidents


def _to_row(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "service": incident.service,
        "node": incident.node,
        "issue": incident.issue,
        "action": incident.action,
        "status": incident.status.value,
        "severity": incident.severity.value,
        "trigger": incident.trigger,
        "rule_id": incident.rule_id,
        "dedup_key": incident.dedup_key,
        "occurrences": incident.occurrences,
        "opened_at": incident.opened_at,
        "last_seen_at": incident.last_seen_at,
        "resolved_at": incident.resolved_at,
        "resolved_by": incident.resolved_by,
        "method": None if incident.method is None else incident.method.value,
        "notes": incident.notes,
    }


def _from_row(row: Row[Any], timeline: tuple[TimelineEntry, ...] = ()) -> Incident:
    values = dict(row._mapping)
    return Incident(
        **{
            **values,
            "status": IncidentStatus(row.status),
            "severity": Severity(row.severity),
            "method": None if row.method is None else ResolutionMethod(row.method),
        },
        timeline=timeline,
    )


def _entry_rows(incident_id: str, entries: Sequence[TimelineEntry]) -> list[dict[str, Any]]:
    return [
        {"incident_id": incident_id, "at": e.at, "kind": e.kind.value, "message": e.message} for e in entries
    ]


class SqlAlchemyIncidentRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, incident: Incident, entries: Sequence[TimelineEntry]) -> None:
        try:
            await self._connection.execute(insert(incidents).values(_to_row(incident)))
        except IntegrityError as exc:
            raise Conflict(f"an open incident with the key {incident.dedup_key!r} exists") from exc
        await self._append(incident.id, entries)

    async def update(self, incident: Incident, appended: Sequence[TimelineEntry]) -> None:
        await self._connection.execute(
            update(incidents).where(incidents.c.id == incident.id).values(_to_row(incident))
        )
        await self._append(incident.id, appended)

    async def _append(self, incident_id: str, entries: Sequence[TimelineEntry]) -> None:
        if entries:
            await self._connection.execute(insert(incident_timeline), _entry_rows(incident_id, entries))

    async def get(self, incident_id: str) -> Incident | None:
        row = (await self._connection.execute(select(incidents).where(incidents.c.id == incident_id))).first()
        if row is None:
            return None
        entries = await self._connection.execute(
            select(incident_timeline.c.at, incident_timeline.c.kind, incident_timeline.c.message)
            .where(incident_timeline.c.incident_id == incident_id)
            .order_by(incident_timeline.c.id)
        )
        timeline = tuple(TimelineEntry(e.at, TimelineKind(e.kind), e.message) for e in entries)
        return _from_row(row, timeline)

    async def find(self, dedup_key: str) -> Incident | None:
        resolved_last = case((incidents.c.status == IncidentStatus.RESOLVED.value, 1), else_=0)
        statement = (
            select(incidents)
            .where(incidents.c.dedup_key == dedup_key)
            .order_by(resolved_last, incidents.c.resolved_at.desc())
            .limit(1)
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else _from_row(row)

    async def query(self, query: IncidentQuery) -> list[Incident]:
        statement = (
            select(incidents).order_by(incidents.c.opened_at.desc(), incidents.c.id.desc()).limit(query.limit)
        )
        if query.status is not None:
            statement = statement.where(incidents.c.status == query.status.value)
        if query.service is not None:
            statement = statement.where(incidents.c.service == query.service)
        if query.node is not None:
            statement = statement.where(incidents.c.node == query.node)
        return [_from_row(row) for row in await self._connection.execute(statement)]
