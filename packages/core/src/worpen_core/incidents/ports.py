"""What incidents need from storage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from worpen_core.incidents.model import Incident, IncidentQuery, TimelineEntry
from worpen_core.shared.ports import UnitOfWork


class IncidentRepository(Protocol):
    """Incidents without their timeline, except from `get`."""

    async def add(self, incident: Incident, entries: Sequence[TimelineEntry]) -> None:
        """Store a new incident and the start of its timeline. Raises Conflict if an open incident (PENDING
        or FAILED) with the same dedup key exists, even one another writer added concurrently; the
        transaction is then to be abandoned."""
        ...

    async def update(self, incident: Incident, appended: Sequence[TimelineEntry]) -> None:
        """Store the incident's fields as they are now and append to its timeline."""
        ...

    async def get(self, incident_id: str) -> Incident | None:
        """The incident with its whole timeline, oldest entry first."""
        ...

    async def find(self, dedup_key: str) -> Incident | None:
        """The open incident with this key, else the one of this key resolved last, else None."""
        ...

    async def query(self, query: IncidentQuery) -> list[Incident]:
        """Matching incidents, newest (by opened_at) first."""
        ...


class IncidentsUnitOfWork(UnitOfWork, Protocol):
    """A transaction over incidents."""

    incidents: IncidentRepository


IncidentsUnitOfWorkFactory = Callable[[], IncidentsUnitOfWork]
