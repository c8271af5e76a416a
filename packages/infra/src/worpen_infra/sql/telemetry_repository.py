"""TelemetryStore on SQLAlchemy Core. The SQLite specifics stay here: buckets are merged by an upsert whose
scalar min()/max() merge the aggregates in the database, and deletes go a bounded batch at a time."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, tuple_, update
from sqlalchemy.dialects.sqlite import insert as upsert
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.fleet.model import TelemetrySample
from worpen_core.fleet.readings import Readings
from worpen_core.telemetry.model import (
    COUNTERS,
    METRICS,
    Aggregate,
    Counters,
    RawSample,
    Rollup,
    Tier,
    Totals,
)
from worpen_infra.sql.bulk_write import BulkWrite
from worpen_infra.sql.tables import (
    AGGREGATE_PARTS,
    SAMPLE_READINGS,
    agent_samples,
    telemetry_counters,
    telemetry_progress,
    telemetry_rollups,
)

PROGRESS = 1
"""The id of telemetry_progress' one row."""
IDS_PER_QUERY = 500
"""Agent ids per IN (...) list, well under SQLite's limit on bound parameters."""

_values = tuple(f"{metric}_{part}" for metric in METRICS for part in AGGREGATE_PARTS) + COUNTERS
_rollup = telemetry_rollups.c


def _merged() -> dict[str, ColumnElement[Any]]:
    """How a stored bucket takes in a new one: min of the mins and max of the maxes (SQLite's scalar
    min() and max() are NULL if either side is, hence the coalesce), sums of the rest."""
    new = upsert(telemetry_rollups).excluded
    merged: dict[str, ColumnElement[Any]] = {}
    for metric in METRICS:
        low, high = f"{metric}_min", f"{metric}_max"
        merged[low] = func.coalesce(func.min(_rollup[low], new[low]), _rollup[low], new[low])
        merged[high] = func.coalesce(func.max(_rollup[high], new[high]), _rollup[high], new[high])
        for part in ("sum", "count"):
            merged[f"{metric}_{part}"] = _rollup[f"{metric}_{part}"] + new[f"{metric}_{part}"]
    for counter in COUNTERS:
        merged[counter] = _rollup[counter] + new[counter]
    return merged


_merge = BulkWrite(
    upsert(telemetry_rollups).on_conflict_do_update(
        index_elements=[_rollup.tier, _rollup.series, _rollup.start], set_=_merged()
    ),
    ("tier", "series", "start", *_values),
)
_new_counters = upsert(telemetry_counters)
_save_counters = BulkWrite(
    _new_counters.on_conflict_do_update(
        index_elements=[telemetry_counters.c.agent_id],
        set_={name: _new_counters.excluded[name] for name in ("at", *COUNTERS)},
    ),
    ("agent_id", "at", *COUNTERS),
)
_read_samples = select(
    agent_samples.c.id,
    agent_samples.c.agent_id,
    agent_samples.c.at,
    *(agent_samples.c[n] for n in SAMPLE_READINGS),
)
_read_rollups = select(_rollup.start, *(_rollup[name] for name in _values))
_watermark = select(telemetry_progress.c.watermark).where(telemetry_progress.c.id == PROGRESS)


def _row(rollup: Rollup) -> tuple[object, ...]:
    values: list[object] = [int(rollup.tier), rollup.series, int(rollup.start.timestamp())]
    for found in rollup.totals.aggregates:
        values.extend(
            (None, None, 0.0, 0) if found is None else (found.min, found.max, found.sum, found.count)
        )
    values.extend(rollup.totals.increases)
    return tuple(values)


def _rollup_of(tier: Tier, series: str, row: Sequence[Any]) -> Rollup:
    aggregates = []
    for index in range(len(METRICS)):
        low, high, total, count = row[1 + 4 * index : 5 + 4 * index]
        aggregates.append(Aggregate(low, high, total, count) if count else None)
    increases = tuple(row[1 + 4 * len(METRICS) :])
    return Rollup(tier, series, datetime.fromtimestamp(row[0], UTC), Totals(tuple(aggregates), increases))


class SqlAlchemyTelemetryStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def samples_after(self, sample_id: int, limit: int) -> list[RawSample]:
        rows = await self._connection.execute(
            _read_samples.where(agent_samples.c.id > sample_id).order_by(agent_samples.c.id).limit(limit)
        )
        return [RawSample(row[0], TelemetrySample(row[1], row[2], Readings(*row[3:]))) for row in rows]

    async def watermark(self) -> int:
        found = await self._connection.scalar(_watermark)
        return int(found or 0)

    async def counters(self, agent_ids: Collection[str]) -> dict[str, Counters]:
        found: dict[str, Counters] = {}
        columns = [telemetry_counters.c[name] for name in ("agent_id", "at", *COUNTERS)]
        ordered = sorted(agent_ids)
        for first in range(0, len(ordered), IDS_PER_QUERY):
            chunk = ordered[first : first + IDS_PER_QUERY]
            rows = await self._connection.execute(
                select(*columns).where(telemetry_counters.c.agent_id.in_(chunk))
            )
            found.update((row[0], Counters(row[1], tuple(row[2:]))) for row in rows)
        return found

    async def merge(self, rollups: Sequence[Rollup]) -> None:
        await _merge.run(self._connection, (_row(rollup) for rollup in rollups))

    async def advance(self, since: int, watermark: int, counters: Mapping[str, Counters]) -> bool:
        moved = await self._connection.execute(
            update(telemetry_progress)
            .where(telemetry_progress.c.id == PROGRESS, telemetry_progress.c.watermark == since)
            .values(watermark=watermark)
        )
        if moved.rowcount == 0:
            if since != 0:
                return False
            first = await self._connection.execute(
                upsert(telemetry_progress)
                .values(id=PROGRESS, watermark=watermark)
                .on_conflict_do_nothing(index_elements=[telemetry_progress.c.id])
            )
            if first.rowcount == 0:
                return False
        await _save_counters.run(self._connection, _counter_rows(counters))
        return True

    async def rollups(self, tier: Tier, series: str, start: datetime, end: datetime) -> list[Rollup]:
        rows = await self._connection.execute(
            _read_rollups.where(
                _rollup.tier == int(tier),
                _rollup.series == series,
                _rollup.start >= int(start.timestamp()),
                _rollup.start < int(end.timestamp()),
            ).order_by(_rollup.start)
        )
        return [_rollup_of(tier, series, row) for row in rows]

    async def delete_samples(self, before: datetime, limit: int) -> int:
        oldest = (
            select(agent_samples.c.id)
            .where(agent_samples.c.id < _watermark.scalar_subquery())
            .order_by(agent_samples.c.id)
            .limit(limit)
        )
        deleted = await self._connection.execute(
            delete(agent_samples).where(agent_samples.c.id.in_(oldest), agent_samples.c.at < before)
        )
        return deleted.rowcount

    async def delete_rollups(self, tier: Tier, before: datetime, limit: int) -> int:
        oldest = (
            select(_rollup.tier, _rollup.series, _rollup.start)
            .where(_rollup.tier == int(tier), _rollup.start < int(before.timestamp()))
            .limit(limit)
        )
        deleted = await self._connection.execute(
            delete(telemetry_rollups).where(tuple_(_rollup.tier, _rollup.series, _rollup.start).in_(oldest))
        )
        return deleted.rowcount


def _counter_rows(counters: Mapping[str, Counters]) -> Iterable[tuple[object, ...]]:
    return ((agent_id, found.at, *found.values) for agent_id, found in sorted(counters.items()))
