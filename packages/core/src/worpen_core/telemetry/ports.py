"""What telemetry history needs from storage. The raw tier is the fleet's samples; the rollups, the
rollup's progress and the agents' last counters are this feature's own. A backend's specifics (upserts,
batched deletes) stay in its adapter."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from worpen_core.shared.ports import UnitOfWork
from worpen_core.telemetry.model import Counters, RawSample, Rollup, Tier


class TelemetryStore(Protocol):
    async def samples_after(self, sample_id: int, limit: int) -> list[RawSample]:
        """Up to `limit` raw samples with ids above `sample_id`, in order of id. Ids grow in the order
        samples are committed, so none can later appear below one already read."""
        ...

    async def watermark(self) -> int:
        """The id of the last raw sample rolled up (0 before the first)."""
        ...

    async def counters(self, agent_ids: Collection[str]) -> dict[str, Counters]:
        """The last counters stored for these agents (those that have some)."""
        ...

    async def merge(self, rollups: Sequence[Rollup]) -> None:
        """Merge each rollup into the stored bucket of its key (tier, series, start), or store it."""
        ...

    async def advance(self, since: int, watermark: int, counters: Mapping[str, Counters]) -> bool:
        """Move the watermark from `since` to `watermark` and store these agents' last counters (replacing
        theirs); False, changing nothing, if the watermark is no longer at `since` (another server on
        the same database rolled these samples up). Called before `merge`, so that a run that lost the
        race writes nothing."""
        ...

    async def rollups(self, tier: Tier, series: str, start: datetime, end: datetime) -> list[Rollup]:
        """The series' buckets of `tier` starting in [start, end), in order of start."""
        ...

    async def delete_samples(self, before: datetime, limit: int) -> int:
        """Of the `limit` oldest raw samples (by id) that were rolled up, delete those taken before
        `before`; returns how many. Never the one at the watermark, so that a new sample's id stays above
        it. A bounded amount of work, whatever the table holds; the caller goes on while a whole batch
        went (ids follow time, so the oldest samples are the first ones)."""
        ...

    async def delete_rollups(self, tier: Tier, before: datetime, limit: int) -> int:
        """Delete up to `limit` buckets of `tier` starting before `before`; returns how many."""
        ...


class TelemetryUnitOfWork(UnitOfWork, Protocol):
    """A transaction over telemetry history."""

    telemetry: TelemetryStore


TelemetryUnitOfWorkFactory = Callable[[], TelemetryUnitOfWork]
