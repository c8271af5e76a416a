"""The incident repository, in memory: a transaction's writes are staged and reach the tables every unit of
work of one Store shares when it commits, where the one-open-incident-per-key rule is checked again (as
the database's unique index does against concurrent writers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from weakref import WeakKeyDictionary

from tests.fakes.store import Store
from worpen_core.incidents.model import Incident, IncidentQuery, TimelineEntry
from worpen_core.shared.errors import Conflict


@dataclasses.dataclass
class _Tables:
    incidents: dict[str, Incident] = dataclasses.field(default_factory=dict)
    timelines: dict[str, list[TimelineEntry]] = dataclasses.field(default_factory=dict)


_tables: WeakKeyDictionary[Store, _Tables] = WeakKeyDictionary()
"""The incident tables of each Store (kept beside it, as the Store has no fields of incidents')."""


def _copy(incident: Incident) -> Incident:
    return dataclasses.replace(incident, timeline=())


def _clashes(incident: Incident, rows: dict[str, Incident]) -> bool:
    return incident.is_open and any(
        other.is_open and other.dedup_key == incident.dedup_key and other.id != incident.id
        for other in rows.values()
    )


class FakeIncidentRepository:
    def __init__(self, store: Store) -> None:
        self._tables = _tables.setdefault(store, _Tables())
        self._staged: dict[str, Incident] = {}
        self._appended: list[tuple[str, TimelineEntry]] = []

    def _rows(self) -> dict[str, Incident]:
        return {**self._tables.incidents, **self._staged}

    async def add(self, incident: Incident, entries: Sequence[TimelineEntry]) -> None:
        rows = self._rows()
        if incident.id in rows or _clashes(incident, rows):
            raise Conflict(f"an open incident with the key {incident.dedup_key!r} exists")
        self._staged[incident.id] = _copy(incident)
        self._appended.extend((incident.id, entry) for entry in entries)

    async def update(self, incident: Incident, appended: Sequence[TimelineEntry]) -> None:
        if incident.id in self._rows():
            self._staged[incident.id] = _copy(incident)
            self._appended.extend((incident.id, entry) for entry in appended)

    async def get(self, incident_id: str) -> Incident | None:
        found = self._rows().get(incident_id)
        if found is None:
            return None
        timeline = [
            *self._tables.timelines.get(incident_id, []),
            *(entry for owner, entry in self._appended if owner == incident_id),
        ]
        return dataclasses.replace(found, timeline=tuple(timeline))

    async def find(self, dedup_key: str) -> Incident | None:
        matching = [incident for incident in self._rows().values() if incident.dedup_key == dedup_key]
        open_ones = [incident for incident in matching if incident.is_open]
        if open_ones:
            return _copy(open_ones[0])
        resolved = sorted(matching, key=lambda incident: incident.resolved_at or incident.opened_at)
        return _copy(resolved[-1]) if resolved else None

    async def query(self, query: IncidentQuery) -> list[Incident]:
        matching = [
            _copy(incident)
            for incident in self._rows().values()
            if (query.status is None or incident.status is query.status)
            and (query.service is None or incident.service == query.service)
            and (query.node is None or incident.node == query.node)
        ]
        matching.sort(key=lambda incident: (incident.opened_at, incident.id), reverse=True)
        return matching[: query.limit]

    def commit(self) -> None:
        after = {**self._tables.incidents, **self._staged}
        for incident in self._staged.values():
            if _clashes(incident, after):
                raise Conflict(f"an open incident with the key {incident.dedup_key!r} exists")
        self._tables.incidents.update(self._staged)
        for owner, entry in self._appended:
            self._tables.timelines.setdefault(owner, []).append(entry)
        self.discard()

    def discard(self) -> None:
        self._staged.clear()
        self._appended.clear()
