"""What the central log needs from storage. How `LogQuery.text` is searched (SQLite's FTS5, PostgreSQL's
tsvector...) is the adapter's business."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from worpen_core.events.ports import EventsUnitOfWork
from worpen_core.logs.model import LogEntry, LogFilter, LogLine, LogQuery


@dataclass(frozen=True, slots=True)
class Pruned:
    entries: int
    bytes: int


class LogRepository(Protocol):
    async def append(self, lines: Sequence[LogLine]) -> list[int]:
        """Store `lines`; their ids, in order, each greater than any stored before."""
        ...

    async def query(self, query: LogQuery) -> list[LogEntry]:
        """Matching entries, newest first; InvalidInput naming `q` for a text query it cannot read."""
        ...

    async def after(self, after: int, limit: int, kept: LogFilter) -> list[LogEntry]:
        """At most `limit` entries numbered above `after` that `kept` keeps, oldest first."""
        ...

    async def size(self) -> int:
        """The log's size: the sum of its entries' LogLine.size."""
        ...

    async def prune(self, before: datetime, excess: int, limit: int) -> Pruned:
        """Delete at most `limit` of the oldest entries: those timestamped before `before`, and beyond
        them as many as it takes to free `excess` bytes."""
        ...


class LogsUnitOfWork(EventsUnitOfWork, Protocol):
    """A transaction over the log and the journal of events: an event and its line are written together."""

    logs: LogRepository


LogsUnitOfWorkFactory = Callable[[], LogsUnitOfWork]
