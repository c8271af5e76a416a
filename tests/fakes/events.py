"""The journal's repository, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tests.fakes.store import Store
from worpen_core.events.model import EventRecord, RecordedEvent


class FakeEventRepository:
    """Numbers events as they are appended (ids of a transaction rolled back are not handed out again);
    what a transaction appends or prunes reaches the store when it commits."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._appended: list[RecordedEvent] = []
        self._pruned: set[int] = set()

    async def append(self, records: Sequence[EventRecord]) -> list[int]:
        ids = []
        for record in records:
            self._store.last_event_id += 1
            ids.append(self._store.last_event_id)
            self._appended.append(RecordedEvent.numbered(self._store.last_event_id, record))
        return ids

    def _visible(self, types: frozenset[str] | None) -> list[RecordedEvent]:
        return [
            event
            for event in [*self._store.events, *self._appended]
            if event.id not in self._pruned and (types is None or event.type in types)
        ]

    async def after(self, after: int, limit: int, types: frozenset[str] | None = None) -> list[RecordedEvent]:
        return [event for event in self._visible(types) if event.id > after][:limit]

    async def latest(self, limit: int, types: frozenset[str] | None = None) -> list[RecordedEvent]:
        return self._visible(types)[-limit:] if limit else []

    async def prune(self, before: datetime, limit: int) -> int:
        doomed = [event.id for event in self._visible(None) if event.at < before][:limit]
        self._pruned.update(doomed)
        return len(doomed)

    def commit(self) -> None:
        self._store.events = [e for e in [*self._store.events, *self._appended] if e.id not in self._pruned]
        self.discard()

    def discard(self) -> None:
        self._appended.clear()
        self._pruned.clear()
