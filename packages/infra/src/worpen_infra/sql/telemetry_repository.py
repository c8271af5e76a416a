"""TelemetryStore on SQLAlchemy Core. The rollup is computed in the database, a batch per transaction, so
that raw samples never pass through Python (window functions measure the network counters, GROUP BY fills
the buckets, an upsert merges them into the stored ones); deletes go a bounded batch at a time. What SQLite
and PostgreSQL spell differently (reading a stored time as seconds, the smaller of two values, the upsert
itself) is chosen per dialect, each statement built once per dialect."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Dialect,
    Float,
    Insert,
    Integer,
    MetaData,
    Over,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.functions import FunctionElement

from worpen_core.telemetry.model import (
    COUNTERS,
    FLEET,
    GAUGES,
    METRICS,
    RATES,
    Aggregate,
    NetworkRates,
    RolledUp,
    Rollup,
    Tier,
    Totals,
)
from worpen_infra.sql.dialects import PerDialect, upsert
from worpen_infra.sql.tables import (
    AGGREGATE_PARTS,
    agent_samples,
    telemetry_counters,
    telemetry_progress,
    telemetry_rollups,
)

PROGRESS = 1
"""The id of telemetry_progress' one row."""
MICROSECONDS = 1_000_000

_values = tuple(f"{metric}_{part}" for metric in METRICS for part in AGGREGATE_PARTS) + COUNTERS
_rollup = telemetry_rollups.c


def _merged(dialect: Dialect) -> dict[str, ColumnElement[Any]]:
    """How a stored bucket takes in a new one: min of the mins and max of the maxes (SQLite's scalar
    min() and max() are NULL if either side is, hence the coalesce; PostgreSQL calls them least() and
    greatest()), sums of the rest."""
    new = upsert(dialect, telemetry_rollups).excluded
    postgresql = dialect.name == "postgresql"
    smaller, larger = (func.least, func.greatest) if postgresql else (func.min, func.max)
    merged: dict[str, ColumnElement[Any]] = {}
    for metric in METRICS:
        low, high = f"{metric}_min", f"{metric}_max"
        merged[low] = func.coalesce(smaller(_rollup[low], new[low]), _rollup[low], new[low])
        merged[high] = func.coalesce(larger(_rollup[high], new[high]), _rollup[high], new[high])
        for part in ("sum", "count"):
            merged[f"{metric}_{part}"] = _rollup[f"{metric}_{part}"] + new[f"{metric}_{part}"]
    for counter in COUNTERS:
        merged[counter] = _rollup[counter] + new[counter]
    return merged


_sample = agent_samples.c
_stored = telemetry_counters.c
INCREASES = tuple(name.removesuffix("_bytes") + "_increase" for name in COUNTERS)
"""The batch's columns for the bytes each of COUNTERS grew by over the interval before a sample."""

_batch = Table(
    "telemetry_batch",
    MetaData(),
    Column("id", Integer),
    Column("agent_id", String),
    Column("minute", BigInteger),
    *(Column(name, Float) for name in GAUGES + RATES),
    *(Column(name, BigInteger) for name in INCREASES),
    Column("last", Boolean),
    prefixes=["TEMPORARY"],
)
"""The batch being rolled up, a row per raw sample (its id) with its minute, gauges, rates and increases;
`last` marks each agent's new last sample. A temporary table (the connection's own, emptied before the
transaction ends): the buckets, the agents' last counters and their rates are all read from it."""
_create_batch = CreateTable(_batch, if_not_exists=True)


def _times(dialect: Dialect, at: ColumnElement[Any]) -> tuple[ColumnElement[int], ColumnElement[int]]:
    """A stored time as `seconds` and `us` since the epoch, both whole. On PostgreSQL, extract(epoch) of
    the naive UTC timestamp (an exact numeric). On SQLite, UtcDateTime's text ("YYYY-MM-DD
    HH:MM:SS.ffffff"): its date functions keep milliseconds only, hence the fraction read from the text;
    strftime rather than unixepoch(), which SQLite before 3.38 lacks."""
    if dialect.name == "postgresql":
        epoch = func.extract("epoch", at)
        return (
            cast(func.floor(epoch), BigInteger).label("seconds"),
            cast(func.floor(epoch * MICROSECONDS), BigInteger).label("us"),
        )
    seconds = cast(func.strftime("%s", func.substr(at, 1, 19)), Integer)
    us = seconds * MICROSECONDS + cast(func.substr(at, 21, 6), Integer)
    return seconds.label("seconds"), us.label("us")


def _fill_batch(dialect: Dialect) -> Insert:
    """INSERT INTO telemetry_batch the samples with ids in (:since, :upper], measured as RollupBuilder does.

    Each agent's stored last counters come first (id 0). A row is a record when it is later than every row
    of its agent before it (in order of id); a record is measured from the record before it, any other
    sample measures nothing. That is RollupBuilder's rule, a sample measured from the agent's latest
    sample so far: the records are what that latest was, in turn. One window over (agent, record) gives
    each record the one before it. The windows sort only what they need (ids, times, counters); the
    gauges are joined back by id."""
    taken = and_(_sample.id > bindparam("since"), _sample.id <= bindparam("upper"))
    fresh = select(
        _sample.agent_id, _sample.id, *_times(dialect, _sample.at), *(_sample[name] for name in COUNTERS)
    ).where(taken)
    seeds = select(
        _stored.agent_id,
        literal(0, Integer).label("id"),
        *_times(dialect, _stored.at),
        *(_stored[name] for name in COUNTERS),
    ).where(_stored.agent_id.in_(select(_sample.agent_id).where(taken).distinct()))
    history = union_all(fresh, seeds).subquery("history")
    h = history.c
    earlier = func.max(h.us).over(partition_by=h.agent_id, order_by=h.id, rows=(None, -1))
    running = select(history, func.coalesce(h.us > earlier, True).label("record")).subquery("running")
    r = running.c

    def chained(function: FunctionElement[Any]) -> Over[Any]:
        return function.over(partition_by=[r.agent_id, r.record], order_by=r.id)

    records = select(
        running,
        chained(func.lag(r.us)).label("previous_us"),
        *(chained(func.lag(r[name])).label(f"previous_{name}") for name in COUNTERS),
        chained(func.lead(r.id)).label("next_id"),
    ).subquery("records")
    c = records.c
    elapsed = c.us - c.previous_us
    measured = and_(c.record, c.previous_us.is_not(None), elapsed <= bindparam("max_gap"))
    increases = []
    for name, increase in zip(COUNTERS, INCREASES, strict=True):
        now, before = c[name], c[f"previous_{name}"]
        increases.append(
            case(
                (or_(~measured, now.is_(None), before.is_(None)), null()),
                (now >= before, now - before),
                else_=now,
            ).label(increase)
        )
    changes = (
        select(
            c.id,
            (c.seconds - c.seconds % Tier.MINUTE).label("minute"),
            *increases,
            (elapsed / literal_column("1000000.0")).label("seconds"),
            and_(c.record, c.next_id.is_(None)).label("last"),
        )
        .where(c.id > 0)
        .subquery("changes")
    )
    d = changes.c
    rows = select(
        d.id,
        _sample.agent_id,
        d.minute,
        *(_sample[name] for name in GAUGES),
        *(d[increase] / d.seconds for increase in INCREASES),
        *(d[increase] for increase in INCREASES),
        d.last,
    ).join_from(changes, agent_samples, _sample.id == d.id)
    return insert(_batch).from_select([column.name for column in _batch.columns], rows)


def _merge_batch(dialect: Dialect) -> Insert:
    """Merge the batch into telemetry_rollups: grouped per agent and minute, then those groups into the
    agents' hours and the fleet's minutes and hours; each bucket merged into the stored one (see
    `_merged`)."""
    b = _batch.c
    parts: list[ColumnElement[Any]] = []
    for metric in METRICS:
        value = b[metric]
        parts += [func.min(value), func.max(value), func.coalesce(func.sum(value), 0.0), func.count(value)]
    parts += [func.coalesce(func.sum(b[increase]), 0) for increase in INCREASES]
    minutes = (
        select(
            b.agent_id.label("series"),
            b.minute.label("start"),
            *(part.label(name) for part, name in zip(parts, _values, strict=True)),
        )
        .group_by(b.agent_id, b.minute)
        .cte("minutes")
    )
    m = minutes.c
    merged: list[ColumnElement[Any]] = []
    for metric in METRICS:
        merged += [
            func.min(m[f"{metric}_min"]),
            func.max(m[f"{metric}_max"]),
            func.sum(m[f"{metric}_sum"]),
            func.sum(m[f"{metric}_count"]),
        ]
    merged += [func.sum(m[counter]) for counter in COUNTERS]
    hour = m.start - m.start % Tier.HOUR
    fleet = literal(FLEET, String)

    def tier(seconds: Tier) -> ColumnElement[int]:
        return literal(int(seconds), Integer)

    buckets = union_all(
        select(tier(Tier.MINUTE), m.series, m.start, *(m[name] for name in _values)),
        select(tier(Tier.HOUR), m.series, hour, *merged).group_by(m.series, hour),
        select(tier(Tier.MINUTE), fleet, m.start, *merged).group_by(m.start),
        select(tier(Tier.HOUR), fleet, hour, *merged).group_by(hour),
    )
    return (
        upsert(dialect, telemetry_rollups)
        .from_select(["tier", "series", "start", *_values], buckets)
        .on_conflict_do_update(
            index_elements=[_rollup.tier, _rollup.series, _rollup.start], set_=_merged(dialect)
        )
    )


def _save_counters_of(dialect: Dialect) -> Insert:
    """Each agent's last sample of the batch becomes its stored counters."""
    statement = upsert(dialect, telemetry_counters)
    return statement.from_select(
        ["agent_id", "at", *COUNTERS],
        # ending in WHERE: SQLite could read an upsert's ON after a join's as the join's
        select(_sample.agent_id, _sample.at, *(_sample[name] for name in COUNTERS))
        .join_from(_batch, agent_samples, _sample.id == _batch.c.id)
        .where(_batch.c.last),
    ).on_conflict_do_update(
        index_elements=[_stored.agent_id], set_={name: statement.excluded[name] for name in ("at", *COUNTERS)}
    )


def _first_progress_of(dialect: Dialect) -> Insert:
    """The progress row, written by the first rollup unless another server's came first."""
    return (
        upsert(dialect, telemetry_progress)
        .values(id=PROGRESS, watermark=bindparam("upper"))
        .on_conflict_do_nothing(index_elements=[telemetry_progress.c.id])
    )


_fill = PerDialect(_fill_batch)
_merge = PerDialect(_merge_batch)
_save_counters = PerDialect(_save_counters_of)
_first_progress = PerDialect(_first_progress_of)
_read_rates = select(_batch.c.agent_id, *(_batch.c[name] for name in RATES)).where(_batch.c.last)
_empty_batch = delete(_batch)

_read_rollups = select(_rollup.start, *(_rollup[name] for name in _values))


def _regrouped(name: str) -> ColumnElement[Any]:
    """How a display bucket takes in a value of the stored buckets it spans: min of the mins, max of the
    maxes, sum of the rest (SQL's aggregates skip NULLs)."""
    part = name.rpartition("_")[2]
    if part == "min":
        return func.min(_rollup[name])
    if part == "max":
        return func.max(_rollup[name])
    column = _rollup[name]
    total = func.sum(column)
    # PostgreSQL sums integers as numeric, which asyncpg returns as Decimal: a counter would reach the API
    # as a string. Cast back to the column's own type (SQLite sums integers as integers already).
    return cast(total, column.type) if isinstance(column.type, Integer) else total


_slot = (_rollup.start - bindparam("origin", type_=BigInteger)) // bindparam("step", type_=BigInteger)
_read_buckets = (
    select(
        _slot,
        *(_regrouped(name) for name in _values),
    )
    .where(
        _rollup.tier == bindparam("tier"),
        _rollup.series == bindparam("series"),
        _rollup.start >= bindparam("origin"),
        _rollup.start < bindparam("end"),
    )
    .group_by(_slot)
)
"""The stored buckets merged into display buckets of `step` seconds from `origin`, by the database: a
day of a series is 1,440 stored buckets, which Python would take tens of milliseconds to build and merge."""
_watermark = select(telemetry_progress.c.watermark).where(telemetry_progress.c.id == PROGRESS)
_taken = (
    select(_sample.id).where(_sample.id > bindparam("since")).order_by(_sample.id).limit(bindparam("batch"))
).subquery()
_upper = select(func.max(_taken.c.id))
"""The id of the last sample of the next batch; NULL if there is none."""
_advance = (
    update(telemetry_progress)
    .where(telemetry_progress.c.id == PROGRESS, telemetry_progress.c.watermark == bindparam("since"))
    .values(watermark=bindparam("upper"))
)


def _totals_of(row: Sequence[Any]) -> Totals:
    """A bucket's totals from a row of its key, then `_values`."""
    aggregates = []
    for index in range(len(METRICS)):
        low, high, total, count = row[1 + 4 * index : 5 + 4 * index]
        aggregates.append(Aggregate(low, high, total, count) if count else None)
    return Totals(tuple(aggregates), tuple(row[1 + 4 * len(METRICS) :]))


def _rollup_of(tier: Tier, series: str, row: Sequence[Any]) -> Rollup:
    return Rollup(tier, series, datetime.fromtimestamp(row[0], UTC), _totals_of(row))


class SqlAlchemyTelemetryStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def roll_up(self, batch: int, max_gap: timedelta) -> RolledUp:
        connection = self._connection
        since = int(await connection.scalar(_watermark) or 0)
        upper = await connection.scalar(_upper, {"since": since, "batch": batch})
        if upper is None:
            return RolledUp(0, {})  # nothing new: no write, no transaction
        await connection.execute(_create_batch)
        # The transaction's first statement writes, so it holds the write lock from the start: no flush
        # commits between what it reads and what it writes (a SQLite transaction that read first could
        # not write after another commit). The batch was fixed before: no sample can come below `upper`
        # (on PostgreSQL, samples commit in id order: dialects.serialize_appends). There, a replica rolling
        # up the same batch waits on the progress row and then finds the watermark moved.
        moved = await connection.execute(_advance, {"since": since, "upper": upper})
        if moved.rowcount == 0:
            if since != 0:
                return RolledUp(0, {})  # another server on this database rolled this batch up
            first = await connection.execute(_first_progress(connection.dialect), {"upper": upper})
            if first.rowcount == 0:
                return RolledUp(0, {})
        dialect = connection.dialect
        filled = await connection.execute(
            _fill(dialect), {"since": since, "upper": upper, "max_gap": max_gap // timedelta(microseconds=1)}
        )
        await connection.execute(_merge(dialect))
        await connection.execute(_save_counters(dialect))
        rates = {row[0]: NetworkRates(row[1], row[2]) for row in await connection.execute(_read_rates)}
        await connection.execute(_empty_batch)
        return RolledUp(filled.rowcount, rates)

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

    async def buckets(
        self, tier: Tier, series: str, start: datetime, step: int, count: int
    ) -> list[Totals | None]:
        origin = int(start.timestamp())
        rows = await self._connection.execute(
            _read_buckets,
            {
                "tier": int(tier),
                "series": series,
                "origin": origin,
                "step": step,
                "end": origin + step * count,
            },
        )
        buckets: list[Totals | None] = [None] * count
        for row in rows:
            buckets[row[0]] = _totals_of(row)
        return buckets

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
