"""Telemetry history's store, in memory: changes are staged and applied when the unit of work commits."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from tests.fakes.store import Store
from worpen_core.telemetry.model import Counters, RawSample, Rollup, Tier


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

    async def samples_after(self, sample_id: int, limit: int) -> list[RawSample]:
        numbered = zip(self._store.sample_ids, self._store.samples, strict=True)
        return [RawSample(number, sample) for number, sample in numbered if number > sample_id][:limit]

    async def watermark(self) -> int:
        return self._store.watermark if self._watermark is None else self._watermark

    async def counters(self, agent_ids: Collection[str]) -> dict[str, Counters]:
        stored = {**self._store.counters, **self._counters}
        return {agent_id: stored[agent_id] for agent_id in agent_ids if agent_id in stored}

    async def merge(self, rollups: Sequence[Rollup]) -> None:
        self._staged.extend(rollups)

    async def advance(self, since: int, watermark: int, counters: Mapping[str, Counters]) -> bool:
        if await self.watermark() != since:
            return False
        self._watermark = watermark
        self._counters.update(counters)
        return True

    async def rollups(self, tier: Tier, series: str, start: datetime, end: datetime) -> list[Rollup]:
        return [
            rollup
            for rollup in merge_rollups([*self._store.rollups.values(), *self._staged])
            if rollup.tier is tier and rollup.series == series and start <= rollup.start < end
        ]

    async def delete_samples(self, before: datetime, limit: int) -> int:
        watermark = await self.watermark()
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
