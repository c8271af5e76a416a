"""The central log: one writer for the journal of events and the log, readers, followers and retention."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

from worpen_core.events.journal import EventJournal
from worpen_core.events.model import Event, EventRecord, RecordedEvent
from worpen_core.events.ports import JournalSignal
from worpen_core.logs.commands import ShipLogs
from worpen_core.logs.model import FieldValue, LogEntry, LogFilter, LogLine, LogPolicy, LogQuery
from worpen_core.logs.ports import LogsUnitOfWorkFactory
from worpen_core.logs.render import render
from worpen_core.shared.broadcast import Broadcast, resume
from worpen_core.shared.errors import WorpenError
from worpen_core.shared.ports import Clock
from worpen_core.shared.streams import wait_or_stop

BATCH_LINES = 5000
"""Lines (events included) written per transaction at most."""
TAIL_PAGE = 1000
"""Events, and log entries, the tail reads from the store at a time."""
TAIL_POLL = 1.0
"""Seconds the tail waits for a signal before it reads the store anyway (a signal lost on the way)."""


@dataclass(slots=True)
class _Shipped:
    lines: list[LogLine]
    written: asyncio.Future[None]


class CentralLog:
    """Writes what happens: each domain event in the journal and, rendered, in the log, in the same
    transaction; and the lines agents ship. One writer commits whatever is pending in one transaction
    (group commit: a burst of 10,000 events is a few commits, not 10,000), so ids follow the commit order
    and followers get entries in that order. Events are taken without waiting (the bus must not wait on
    the disk); shipped lines are acknowledged once committed.

    With a `signal` (several replicas writing one database), what this process commits is not handed to
    its followers directly: the signal wakes the tail of every replica, which reads what any of them
    committed back from the store, in the order of the ids, and hands that to the followers. The
    counters stay this process's own (what it wrote)."""

    def __init__(
        self,
        uow: LogsUnitOfWorkFactory,
        journal: EventJournal,
        clock: Clock,
        policy: LogPolicy,
        *,
        buffer: int,
        signal: JournalSignal | None = None,
        poll: float = TAIL_POLL,
    ) -> None:
        self._uow = uow
        self._journal = journal
        self._clock = clock
        self.policy = policy
        self._signal = signal
        self._poll = poll
        self._tailed: tuple[int, int] | None = None
        """The last event and the last log entry the tail handed to the followers."""
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
        writes and the pruning when this process is the log's only writer; read at each pruning when
        other replicas write too (with a signal)."""

    @property
    def followers(self) -> int:
        return self._live.followers

    @property
    def tailing(self) -> bool:
        """Whether followers get what the tail reads back from the store (several replicas)."""
        return self._signal is not None

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
        if self._signal is not None:
            async with self._uow() as tx:  # other replicas write too: nothing to keep up to date
                self._size = await tx.logs.size()
        elif self._size is None:
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

    async def start_tail(self) -> None:
        """Tail from the newest event and log entry: what was committed before is in the store, where
        followers read what they missed. Before the server takes requests, so that no follower reads
        the store before the tail's starting point and waits live for what lies between."""
        self._tailed = await self._newest()

    async def tail(self, stopping: asyncio.Event) -> None:
        """Until `stopping` is set: whenever the signal says some replica committed (or every `poll`
        seconds), hand the events and log entries committed since the last time to the followers, in
        the order of their ids. Ids commit in that order on every replica (the storage adapter sees to
        it), so reading above the last one handed skips nothing; a lost database is retried."""
        signal = self._signal
        if signal is None:
            return  # one process: its followers get what it commits as it commits it
        while not stopping.is_set():
            # The store unreachable, it is read again at the next signal or poll.
            with contextlib.suppress(WorpenError):
                await self._catch_up()
            await wait_or_stop(signal.wait(self._poll), stopping)

    async def _newest(self) -> tuple[int, int]:
        async with self._uow() as tx:
            events = await tx.events.latest(1)
            entries = await tx.logs.query(LogQuery(limit=1))
        return events[-1].id if events else 0, entries[0].id if entries else 0

    async def _catch_up(self) -> None:
        if self._tailed is None:
            self._tailed = await self._newest()
        tailed = self._tailed
        while True:
            last_event, last_entry = tailed
            async with self._uow() as tx:
                events = await tx.events.after(last_event, TAIL_PAGE)
                entries = await tx.logs.after(last_entry, TAIL_PAGE, LogFilter())
            tailed = self._tailed = (
                events[-1].id if events else last_event,
                entries[-1].id if entries else last_entry,
            )
            self._journal.tailed(events)
            self._live.publish(entries)
            if len(events) < TAIL_PAGE and len(entries) < TAIL_PAGE:
                return
            await asyncio.sleep(0)  # let the followers take this page

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
                self._journal.committed(recorded, live=self._signal is None)
                if self._signal is None:
                    self._live.publish(entries)
                else:
                    self._signal.announce()
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
