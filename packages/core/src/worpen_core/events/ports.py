"""The event bus port, and what the journal needs from storage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from worpen_core.events.model import Event, EventRecord, RecordedEvent
from worpen_core.shared.ports import UnitOfWork

EventHandler = Callable[[Event], Awaitable[None]]


class EventBus(Protocol):
    async def publish(self, events: Iterable[Event]) -> None: ...

    def subscribe(self, handler: EventHandler) -> None:
        """Deliver every event published from now on to `handler`; a failing handler does not stop the
        others."""
        ...


class EventRepository(Protocol):
    """The journal: append-only, numbered in the order of the commits that append."""

    async def append(self, records: Sequence[EventRecord]) -> list[int]:
        """Store `records`; their ids, in order, each greater than any stored before."""
        ...

    async def after(self, after: int, limit: int, types: frozenset[str] | None = None) -> list[RecordedEvent]:
        """At most `limit` events numbered above `after` (of these `types` only, if given), oldest first."""
        ...

    async def latest(self, limit: int, types: frozenset[str] | None = None) -> list[RecordedEvent]:
        """The newest `limit` events (of these `types` only, if given), oldest first."""
        ...

    async def prune(self, before: datetime, limit: int) -> int:
        """Delete at most `limit` of the oldest events that happened before `before`; how many went."""
        ...


class EventsUnitOfWork(UnitOfWork, Protocol):
    """A transaction over the journal."""

    events: EventRepository


EventsUnitOfWorkFactory = Callable[[], EventsUnitOfWork]
