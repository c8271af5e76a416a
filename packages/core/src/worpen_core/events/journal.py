"""The journal of domain events: kept in the store, so readers resume across restarts, and followed live
through one in-memory fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from datetime import timedelta
from functools import partial

from worpen_core.events.model import RecordedEvent
from worpen_core.events.ports import EventsUnitOfWorkFactory
from worpen_core.shared.broadcast import Broadcast, resume
from worpen_core.shared.ports import Clock


class EventJournal:
    """Reads the stored events and follows new ones. Whatever records events (the central log's writer)
    calls `committed` with them once they are committed, in the order of their ids; with several replicas
    on one database, what any of them committed is read back from the store and handed to `tailed`
    instead (see CentralLog.tail)."""

    def __init__(
        self,
        uow: EventsUnitOfWorkFactory,
        clock: Clock,
        *,
        keep: timedelta,
        buffer: int,
        prune_batch: int,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._keep = keep
        self._prune_batch = prune_batch
        self._live: Broadcast[RecordedEvent] = Broadcast(buffer)
        self.recorded = 0
        """Events this process committed since it started (a monotonic counter, for throughput): with
        several replicas, each counts what it wrote."""

    @property
    def followers(self) -> int:
        return self._live.followers

    def committed(self, events: Sequence[RecordedEvent], *, live: bool = True) -> None:
        """`events` were committed by this process; `live`: hand them to the followers now (False when
        a tail reads them back from the store, in the order every replica committed them)."""
        self.recorded += len(events)
        if live:
            self._live.publish(events)

    def tailed(self, events: Sequence[RecordedEvent]) -> None:
        """Events any replica committed, read back from the store in the order of their ids."""
        self._live.publish(events)

    async def read(
        self, after: int | None, limit: int, types: frozenset[str] | None = None
    ) -> list[RecordedEvent]:
        """Events numbered above `after`, or the newest when None; at most `limit`, oldest first."""
        async with self._uow() as tx:
            if after is None:
                return await tx.events.latest(limit, types)
            return await tx.events.after(after, limit, types)

    async def follow(
        self, after: int | None, types: frozenset[str] | None = None
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Events numbered above `after` (when None, above the newest at the time of the call), as they
        are recorded, forever; the stream raises FellBehind when the follower does not keep up."""
        if after is None:
            newest = await self.read(None, 1)
            after = newest[-1].id if newest else 0
        return resume(self._live, partial(self._stored, types=types), after, partial(_of_types, types))

    async def _stored(self, after: int, limit: int, types: frozenset[str] | None) -> list[RecordedEvent]:
        async with self._uow() as tx:
            return await tx.events.after(after, limit, types)

    async def prune(self) -> int:
        """Delete the events older than the retention, a bounded batch per transaction so that no write
        waits long for the database; how many went."""
        before = self._clock.now() - self._keep
        pruned = 0
        while True:
            async with self._uow() as tx:
                count = await tx.events.prune(before, self._prune_batch)
                await tx.commit()
            pruned += count
            if count < self._prune_batch:
                return pruned
            await asyncio.sleep(0)


def _of_types(types: frozenset[str] | None, event: RecordedEvent) -> bool:
    return types is None or event.type in types
