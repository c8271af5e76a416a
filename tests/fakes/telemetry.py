"""Telemetry history's store, in memory: changes are staged and applied when the unit of work commits. The
rollup is core's reference, RollupBuilder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from tests.fakes.store import Store
from worpen_core.telemetry.model import Counters, RolledUp, Rollup, RollupBuilder, Tier, Totals, Window


def merge_rollups(rollups: Iterable[Rollup]) -> list[Rollup]:
    """Rollups of the same key merged into one, in order of key."""
    merged: dict[tuple[Tier, str, datetime], Rollup] = {}
    for rollup in rollups:
        found = merged.get(rollup.key)
        if found is not None:
            rollup = replace(rollup, totals=found.totals.merge(rollup.totals))
        merged[rollup.key] = rollup
    return [merged[key] for key in sorted(merged)]


class FakeTelemetryStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._staged: list[Rollup] = []
        self._watermark: int | None = None
        self._counters: dict[str, Counters] = {}
        self._deleted_samples: set[int] = set()
        self._deleted_rollups: set[tuple[Tier, str, datetime]] = set()

    async def roll_up(self, batch: int, max_gap: timedelta) -> RolledUp:
        watermark = self._current_watermark()
        numbered = zip(self._store.sample_ids, self._store.samples, strict=True)
        taken = [(number, sample) for number, sample in numbered if number > watermark][:batch]
        if not taken:
            return RolledUp(0, {})
        agents = {sample.agent_id for _, sample in taken}
        stored = {**self._store.counters, **self._counters}
        builder = RollupBuilder({agent: stored[agent] for agent in agents if agent in stored}, max_gap)
        builder.add(sample for _, sample in taken)
        self._staged.extend(builder.rollups())
        self._watermark = taken[-1][0]
        self._counters.update({agent: builder.counters[agent] for agent in agents})
        return RolledUp(len(taken), builder.rates())

    async def rollups(self, tier: Tier, series: str, start: datetime, end: datetime) -> list[Rollup]:
        return [
            rollup
            for rollup in merge_rollups([*self._store.rollups.values(), *self._staged])
            if rollup.tier is tier and rollup.series == series and start <= rollup.start < end
        ]

    async def buckets(
        self, tier: Tier, series: str, start: datetime, step: int, count: int
    ) -> list[Totals | None]:
        shown = Window(tier, step, start + timedelta(seconds=step * count), count)
        return shown.gather(await self.rollups(tier, series, start, shown.end))

    async def delete_samples(self, before: datetime, limit: int) -> int:
        watermark = self._current_watermark()
        oldest = [
            (number, sample)
            for number, sample in zip(self._store.sample_ids, self._store.samples, strict=True)
            if number < watermark and number not in self._deleted_samples
        ][:limit]
        found = [number for number, sample in oldest if sample.at < before]
        self._deleted_samples.update(found)
        return len(found)

    async def delete_rollups(self, tier: Tier, before: datetime, limit: int) -> int:
        found = [
            key
            for key in sorted(self._store.rollups)
            if key[0] is tier and key[2] < before and key not in self._deleted_rollups
        ][:limit]
        self._deleted_rollups.update(found)
        return len(found)

    def _current_watermark(self) -> int:
        return self._store.watermark if self._watermark is None else self._watermark

    def commit(self) -> None:
        store = self._store
        for rollup in merge_rollups([*store.rollups.values(), *self._staged]):
            store.rollups[rollup.key] = rollup
        for key in self._deleted_rollups:
            del store.rollups[key]
        if self._watermark is not None:
            store.watermark = self._watermark
        store.counters.update(self._counters)
        kept = [
            (number, sample)
            for number, sample in zip(store.sample_ids, store.samples, strict=True)
            if number not in self._deleted_samples
        ]
        store.sample_ids[:] = [number for number, _ in kept]
        store.samples[:] = [sample for _, sample in kept]
        self.discard()

    def discard(self) -> None:
        self._staged.clear()
        self._watermark = None
        self._counters.clear()
        self._deleted_samples.clear()
        self._deleted_rollups.clear()
