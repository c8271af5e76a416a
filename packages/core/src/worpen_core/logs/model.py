"""The central log's entries, their levels and how they are queried and kept."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

FieldValue = str | int | float | bool | None

ENTRY_OVERHEAD = 128
"""Bytes counted for each entry beyond its text: its row, its indexes and its full-text postings (an
estimate; the retention's size budget is counted in these)."""


class Level(StrEnum):
    """Ordered by how much an operator needs to look: INFO < SUCCESS < WARN < ERROR. SUCCESS sits above
    INFO (a recovery or a completed operation says more than routine news) and below WARN (nothing to
    act on)."""

    INFO = "INFO"
    SUCCESS = "SUCCESS"
    WARN = "WARN"
    ERROR = "ERROR"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def and_above(self) -> frozenset[Level]:
        """This level and the levels above it: what `level=` selects."""
        return frozenset(_ORDER[self.rank :])


_ORDER = (Level.INFO, Level.SUCCESS, Level.WARN, Level.ERROR)


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line about to be written: Worpen's own (a domain event, rendered) or one an agent shipped."""

    timestamp: datetime
    level: Level
    source: str
    """Who said it: an agent id, `agent/unit` for a container or a unit on it, a node, or `worpen`."""
    message: str
    fields: dict[str, FieldValue]

    @property
    def size(self) -> int:
        """The bytes this line counts for in the log's size budget."""
        text = len(self.message.encode()) + len(self.source.encode())
        return text + len(json.dumps(self.fields).encode()) + ENTRY_OVERHEAD


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A line in the log; `id` numbers it in the order it was written (the SSE id and the cursor)."""

    id: int
    timestamp: datetime
    level: Level
    source: str
    message: str
    fields: dict[str, FieldValue]

    @staticmethod
    def numbered(entry_id: int, line: LogLine) -> LogEntry:
        return LogEntry(entry_id, line.timestamp, line.level, line.source, line.message, line.fields)


def from_source(source: str, wanted: str) -> bool:
    """Whether an entry from `source` is one `source=wanted` selects: the source itself, or one of its
    units (`bee-001` selects `bee-001/web-1`)."""
    return source == wanted or source.startswith(wanted + "/")


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What a follower or a query keeps: this level and above, from this source (and its units)."""

    level: Level | None = None
    source: str | None = None

    def keeps(self, entry: LogEntry) -> bool:
        return (self.level is None or entry.level.rank >= self.level.rank) and (
            self.source is None or from_source(entry.source, self.source)
        )


@dataclass(frozen=True, slots=True)
class LogQuery:
    filter: LogFilter = LogFilter()
    since: datetime | None = None
    until: datetime | None = None
    """Entries timestamped at or after `since` and before `until`."""
    text: str | None = None
    """A full-text query on the message: words (all of them), "a phrase", prefix*, OR, NOT; the storage
    adapter reads it (a query it cannot read is InvalidInput naming `q`)."""
    before: int | None = None
    """Only entries numbered below this (the cursor of the next page)."""
    limit: int = 100


@dataclass(frozen=True, slots=True)
class LogPolicy:
    """How long and how much the log keeps (the journal of events too), and how it prunes."""

    keep: timedelta = timedelta(days=30)
    max_bytes: int = 1 << 30
    """The log's size budget, counted as LogLine.size."""
    events_keep: timedelta = timedelta(days=30)
    prune_every: float = 60.0
    prune_batch: int = 1000
    """Entries deleted per transaction, so that no write waits long for the database."""
    max_pending_events: int = 100_000
    """Events kept in memory while the database cannot be written; the oldest go beyond."""
