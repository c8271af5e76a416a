"""The central log: one writer for the journal of events and the log, readers, followers and retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

from worpen_core.events.journal import EventJournal
from worpen_core.events.model import Event, EventRecord, RecordedEvent
from worpen_core.logs.commands import ShipLogs
from worpen_core.logs.model import FieldValue, LogEntry, LogFilter, LogLine, LogPolicy, LogQuery
from worpen_core.logs.ports import LogsUnitOfWorkFactory
from worpen_core.logs.render import render
from worpen_core.shared.broadcast import Broadcast, resume
from worpen_core.shared.errors import WorpenError
from worpen_core.shared.ports import Clock

BATCH_LINES = 5000
"""Lines (events included) written per transaction at most."""


@dataclass(slots=True)
class _Shipped:
    lines: list[LogLine]
    written: asyncio.Future[None]


class CentralLog:
    """Writes what happens: each domain event in the journal and, rendered, in the log, in the same
    transaction; and the lines agents ship. One writer commits whatever is pending in one transaction
    (group commit: a burst of 10,000 events is a few commits, not 10,000), so ids follow the commit order
    and followers get entries in that order. Events are taken without waiting (the bus must not wait on
    the disk); shipped lines are acknowledged once committed."""

    def __init__(
        self,
        uow: LogsUnitOfWorkFactory,
        journal: EventJournal,
        clock: Clock,
        policy: LogPolicy,
        *,
        buffer: int,
    ) -> None:
        self._uow = uow
        self._journal = journal
        self._clock = clock
        self.policy = policy
        self._live: Broadcast[LogEntry] = Broadcast(buffer)
        self._pending: list[Event | _Shipped] = []
        self._write = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self.lines_ingested = 0
        """Lines shipped by agents and committed since this process started (a monotonic counter)."""
        self.entries_written = 0
        """Entries committed since this process started, events' lines included."""
        self.events_dropped = 0
        """Events lost because the database could not be written for too long (see LogPolicy)."""
        self._size: int | None = None
        """The log's size (LogLine.size summed): read from the store once, then kept up to date by the
        writes and the pruning (this process is the log's only writer)."""

    @property
    def followers(self) -> int:
        return self._live.followers

    async def record(self, event: Event) -> None:
        """The event bus's subscriber: the event is written soon, with the events around it."""
        self._pending.append(event)
        self._wake()

    async def ship(self, command: ShipLogs) -> int:
        """Write an agent's lines; returns once they are committed (how many)."""
        lines = command.to_lines(self._clock.now())
        shipped = _Shipped(lines, asyncio.get_running_loop().create_future())
        self._pending.append(shipped)
        self._wake()
        await asyncio.shield(shipped.written)
        return len(lines)

    async def flush(self) -> None:
        """Write everything pending now: at shutdown, and to retry after the database failed (raising
        what stops it)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
        await self._drain()

    async def query(self, query: LogQuery) -> list[LogEntry]:
        async with self._uow() as tx:
            return await tx.logs.query(query)

    async def follow(self, after: int | None, kept: LogFilter) -> AsyncGenerator[LogEntry, None]:
        """Entries numbered above `after` (when None, above the newest at the time of the call) that
        `kept` keeps, as they are written, forever; the stream raises FellBehind when the follower does
        not keep up."""
        if after is None:
            newest = await self.query(LogQuery(limit=1))
            after = newest[0].id if newest else 0
        return resume(self._live, partial(self._stored, kept=kept), after, kept.keeps)

    async def _stored(self, after: int, limit: int, kept: LogFilter) -> list[LogEntry]:
        async with self._uow() as tx:
            return await tx.logs.after(after, limit, kept)

    async def prune(self) -> int:
        """Delete entries older than the retention, then the oldest until the log fits its size budget,
        a bounded batch per transaction so that no write waits long for the database; how many went."""
        before = self._clock.now() - self.policy.keep
        if self._size is None:
            async with self._write, self._uow() as tx:  # no write commits meanwhile
                self._size = await tx.logs.size()
        pruned = 0
        while True:
            excess = max(self._size - self.policy.max_bytes, 0)
            async with self._uow() as tx:
                batch = await tx.logs.prune(before, excess, self.policy.prune_batch)
                await tx.commit()
            pruned += batch.entries
            self._size -= batch.bytes
            if batch.entries < self.policy.prune_batch:
                return pruned
            await asyncio.sleep(0)

    def _wake(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="logs.write")

    async def _write_pending(self) -> None:
        try:
            await self._drain()
        except WorpenError:
            # What could not be written is kept (events) or refused to its sender (shipped lines); the
            # flush job retries and says why it fails.
            return

    async def _drain(self) -> None:
        while self._pending:
            async with self._write:
                batch = self._take()
                if not batch:
                    return
                try:
                    recorded, entries, size = await self._commit(batch)
                except Exception as exc:
                    self._put_back(batch, exc)
                    raise
                if self._size is not None:
                    self._size += size
                self._journal.committed(recorded)
                self._live.publish(entries)
                self.entries_written += len(entries)
                for item in batch:
                    if isinstance(item, _Shipped):
                        self.lines_ingested += len(item.lines)
                        item.written.set_result(None)

    def _take(self) -> list[Event | _Shipped]:
        lines = 0
        taken = 0
        for item in self._pending:
            lines += 1 if isinstance(item, Event) else len(item.lines)
            taken += 1
            if lines >= BATCH_LINES:
                break
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return batch

    async def _commit(
        self, batch: Sequence[Event | _Shipped]
    ) -> tuple[list[RecordedEvent], list[LogEntry], int]:
        """Write the batch in one transaction: its events, their lines and the shipped lines; returns the
        events and entries as numbered, and the bytes the entries count for."""
        now = self._clock.now()
        events = [item for item in batch if isinstance(item, Event)]
        records = [EventRecord.of(event, now) for event in events]
        async with self._uow() as tx:
            ids = await tx.events.append(records) if records else []
            recorded = [RecordedEvent.numbered(i, record) for i, record in zip(ids, records, strict=True)]
            lines = _lines(batch, iter(zip(events, recorded, strict=True)))
            line_ids = await tx.logs.append(lines)
            await tx.commit()
        entries = [LogEntry.numbered(i, line) for i, line in zip(line_ids, lines, strict=True)]
        return recorded, entries, sum(line.size for line in lines)

    def _put_back(self, batch: Sequence[Event | _Shipped], exc: Exception) -> None:
        self._pending[:0] = [item for item in batch if isinstance(item, Event)]
        excess = sum(isinstance(item, Event) for item in self._pending) - self.policy.max_pending_events
        if excess > 0:
            kept: list[Event | _Shipped] = []
            for item in self._pending:
                if excess > 0 and isinstance(item, Event):
                    excess -= 1
                    self.events_dropped += 1
                else:
                    kept.append(item)
            self._pending = kept
        for item in batch:
            if isinstance(item, _Shipped) and not item.written.done():
                item.written.set_exception(exc)


def _lines(batch: Sequence[Event | _Shipped], events: Iterator[tuple[Event, RecordedEvent]]) -> list[LogLine]:
    """The batch's lines in the order it came: each event's rendering, and the shipped lines."""
    lines: list[LogLine] = []
    for item in batch:
        if isinstance(item, _Shipped):
            lines.extend(item.lines)
            continue
        event, recorded = next(events)
        shown = render(event)
        fields: dict[str, FieldValue] = {"event": recorded.type, "eventId": recorded.id}
        lines.append(LogLine(recorded.at, shown.level, shown.source, shown.message, fields))
    return lines
