"""The event bus port, the signal that wakes other replicas, and what the journal needs from storage."""

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


class JournalSignal(Protocol):
    """Wakes every replica when one of them committed events or log entries (several replicas on one
    database). The stored journal and log stay the truth: a signal only says "read them again"."""

    def announce(self) -> None:
        """This replica committed events or log entries: tell every replica (this one too), in the
        background. Never raises: an announcement lost on the way is covered by the waiters' timeout."""
        ...

    async def wait(self, seconds: float) -> None:
        """Return once any replica announced since the last call returned, or after `seconds` (a poll,
        for announcements lost while the signal was down)."""
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
