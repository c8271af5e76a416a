"""The audit repository, in memory."""

from __future__ import annotations

from tests.fakes.store import Store
from worpen_core.audit.model import AuditEntry, AuditQuery
from worpen_core.shared.errors import Conflict


class FakeAuditRepository:
    def __init__(self, store: Store, staged: dict[str, AuditEntry]) -> None:
        self._store = store
        self._staged = staged

    async def add(self, entry: AuditEntry) -> None:
        if entry.id in self._store.audit or entry.id in self._staged:
            raise Conflict("duplicate audit entry")
        self._staged[entry.id] = entry

    async def update(self, entry: AuditEntry) -> None:
        self._staged[entry.id] = entry

    async def query(self, query: AuditQuery) -> list[AuditEntry]:
        matching = [
            entry
            for entry in {**self._store.audit, **self._staged}.values()
            if (query.since is None or entry.at >= query.since)
            and (query.actor is None or entry.actor == query.actor)
            and (query.action is None or entry.action == query.action)
        ]
        matching.sort(key=lambda entry: entry.id)
        matching.sort(key=lambda entry: entry.at, reverse=True)
        return matching[: query.limit]
