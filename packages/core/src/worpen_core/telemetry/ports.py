"""What telemetry history needs from storage. The raw tier is the fleet's samples; the rollups, the
rollup's progress and the agents' last counters are this feature's own. A backend's specifics (the rollup
computed in its own engine, upserts, batched deletes) stay in its adapter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from worpen_core.shared.ports import UnitOfWork
from worpen_core.telemetry.model import RolledUp, Rollup, Tier, Totals


class TelemetryStore(Protocol):
    async def roll_up(self, batch: int, max_gap: timedelta) -> RolledUp:
        """Roll up the next `batch` raw samples after the watermark (the id of the last one rolled up; all
        there are if fewer), as RollupBuilder does: merge them into the stored buckets of every tier, per
        agent and fleet wide, starting each agent's rates from its stored last counters (`max_gap` is the
        longest interval a rate is measured on); then move the watermark to the last of them and store
        each agent's new last counters. Ids grow in the order samples are committed, so none can later
        appear at or below the watermark.

        Nothing changes, and no sample is counted, if another server on the same database moved the
        watermark meanwhile. The caller commits: the buckets, the watermark and the counters move
        together or not at all."""
        ...

    async def rollups(self, tier: Tier, series: str, start: datetime, end: datetime) -> list[Rollup]:
        """The series' buckets of `tier` starting in [start, end), in order of start."""
        ...

    async def buckets(
        self, tier: Tier, series: str, start: datetime, step: int, count: int
    ) -> list[Totals | None]:
        """The series' buckets of `tier` merged into `count` buckets of `step` seconds (a multiple of the
        tier's) from `start`, as `Window.gather` merges them; None for a bucket without data."""
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
