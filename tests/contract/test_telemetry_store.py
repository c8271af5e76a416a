"""The telemetry store's contract, run against the fake and against SQLite (a real file); and the SQL
store's rollup, computed in the database, held to the fake's (core's RollupBuilder, the reference) for any
history of samples, however it is written and rolled up."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_api.bootstrap import StorageFactory
from worpen_core.fleet.model import TelemetrySample
from worpen_core.fleet.readings import Readings
from worpen_core.telemetry.model import (
    FLEET,
    METRICS,
    Aggregate,
    NetworkRates,
    RolledUp,
    Rollup,
    Tier,
    Totals,
)
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GAP = timedelta(seconds=30)
EVER = (T0 - timedelta(days=1), T0 + timedelta(days=2))
"""A span that holds every bucket of these tests."""


def totals(
    cpu: Aggregate | None, rx: Aggregate | None = None, increases: tuple[int, int] = (0, 0), ram: float = 20.0
) -> Totals:
    count = 0 if cpu is None else cpu.count
    aggregates = {"cpu": cpu, "ram": Aggregate(ram, ram, ram * count, count), "net_rx_rate": rx}
    return Totals(tuple(aggregates.get(metric) for metric in METRICS), increases)


def sample(
    seconds: int, agent_id: str = "bee-001", rx: int | None = None, cpu: float = 10.0
) -> TelemetrySample:
    return TelemetrySample(agent_id, T0 + timedelta(seconds=seconds), Readings(cpu, 20.0, None, rx, None))


async def add(uow: StorageFactory, samples: list[TelemetrySample]) -> None:
    async with uow() as tx:
        await tx.samples.add(samples)
        await tx.commit()


async def roll_up(uow: StorageFactory, batch: int = 1000) -> RolledUp:
    async with uow() as tx:
        done = await tx.telemetry.roll_up(batch, GAP)
        await tx.commit()
    return done


async def stored(uow: StorageFactory, tier: Tier, series: str) -> list[Rollup]:
    async with uow() as tx:
        return await tx.telemetry.rollups(tier, series, *EVER)


async def test_samples_are_rolled_up_in_every_tier_per_agent_and_fleet_wide(uow: StorageFactory) -> None:
    await add(
        uow,
        [
            sample(0, rx=1000, cpu=10),
            sample(5, "bee-002", cpu=20),
            sample(10, rx=3000, cpu=30),  # 200 bytes/s
            sample(20, rx=500, cpu=50),  # a reset: 500 bytes in 10 s
        ],
    )

    done = await roll_up(uow)

    assert done == RolledUp(4, {"bee-001": NetworkRates(50.0, None), "bee-002": NetworkRates(None, None)})
    one = totals(Aggregate(10, 50, 90, 3), Aggregate(50, 200, 250, 2), (2500, 0))
    fleet = totals(Aggregate(10, 50, 110, 4), Aggregate(50, 200, 250, 2), (2500, 0))
    for tier in Tier:
        assert await stored(uow, tier, "bee-001") == [Rollup(tier, "bee-001", T0, one)]
        assert await stored(uow, tier, "bee-002") == [Rollup(tier, "bee-002", T0, totals(Aggregate.of(20)))]
        assert await stored(uow, tier, FLEET) == [Rollup(tier, FLEET, T0, fleet)]


async def test_buckets_are_the_stored_ones_merged_into_display_steps(uow: StorageFactory) -> None:
    # cpu 10 to 70 every 10 s over three minutes, rx growing 100 bytes/s: six samples a minute
    await add(uow, [sample(10 * n, rx=1000 * n, cpu=10.0 + n) for n in range(18)])
    await roll_up(uow)

    async with uow() as tx:
        shown = await tx.telemetry.buckets(Tier.MINUTE, FLEET, T0 - timedelta(minutes=2), 120, 4)

    assert shown[0] is None  # nothing before T0
    first, second = shown[1], shown[2]  # [T0, T0 + 2 min) and [T0 + 2 min, T0 + 4 min)
    assert first is not None
    assert second is not None
    assert first.aggregate("cpu") == Aggregate(10, 21, sum(10.0 + n for n in range(12)), 12)
    assert second.aggregate("cpu") == Aggregate(22, 27, sum(10.0 + n for n in range(12, 18)), 6)
    assert (first.increases, second.increases) == ((11_000, 0), (6000, 0))
    # integers, as stored: a Decimal (PostgreSQL's sum of integers) would reach the API as a string
    assert all(type(increase) is int for increase in (*first.increases, *second.increases))
    assert shown[3] is None


async def test_a_later_batch_merges_into_the_stored_buckets_from_the_stored_counters(
    uow: StorageFactory,
) -> None:
    await add(uow, [sample(0, rx=100, cpu=10)])
    assert await roll_up(uow) == RolledUp(1, {"bee-001": NetworkRates(None, None)})
    await add(uow, [sample(10, rx=600, cpu=40)])

    assert await roll_up(uow) == RolledUp(1, {"bee-001": NetworkRates(50.0, None)})

    merged = totals(Aggregate(10, 40, 50, 2), Aggregate.of(50), (500, 0))
    assert await stored(uow, Tier.MINUTE, "bee-001") == [Rollup(Tier.MINUTE, "bee-001", T0, merged)]


async def test_batches_follow_the_ids_and_only_a_committed_one_moves_the_watermark(
    uow: StorageFactory,
) -> None:
    await add(uow, [sample(seconds) for seconds in range(5)])
    async with uow() as tx:
        assert (await tx.telemetry.roll_up(2, GAP)).samples == 2  # rolled back

    assert [(await roll_up(uow, batch=2)).samples for _ in range(4)] == [2, 2, 1, 0]
    assert await stored(uow, Tier.MINUTE, FLEET) == [
        Rollup(Tier.MINUTE, FLEET, T0, totals(Aggregate(10, 10, 50, 5)))
    ]


async def test_buckets_are_read_in_their_range_in_order(uow: StorageFactory) -> None:
    await add(uow, [sample(60 * minute, cpu=minute) for minute in (3, 0, 2, 1, 4)])
    await roll_up(uow)

    async with uow() as tx:
        found = await tx.telemetry.rollups(
            Tier.MINUTE, FLEET, T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
        )

    assert [rollup.start for rollup in found] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    assert [rollup.totals.mean("cpu") for rollup in found] == [1, 2, 3]


async def test_only_rolled_up_samples_go_and_never_the_one_at_the_watermark(uow: StorageFactory) -> None:
    await add(uow, [sample(seconds) for seconds in range(0, 100, 10)])
    async with uow() as tx:
        assert await tx.telemetry.delete_samples(T0 + timedelta(hours=1), 100) == 0  # nothing rolled up
    await roll_up(uow, batch=6)  # up to the sample of 0:50

    async with uow() as tx:
        assert await tx.telemetry.delete_samples(T0 + timedelta(hours=1), 2) == 2
        await tx.commit()
    async with uow() as tx:
        assert await tx.telemetry.delete_samples(T0 + timedelta(seconds=30), 100) == 1  # taken before 0:30
        await tx.commit()
    async with uow() as tx:
        assert await tx.telemetry.delete_samples(T0 + timedelta(hours=1), 100) == 2
        await tx.commit()

    async with uow() as tx:
        kept = await tx.samples.for_agent("bee-001", 100)
    assert sorted(item.at for item in kept) == [T0 + timedelta(seconds=s) for s in range(50, 100, 10)]
    assert (await roll_up(uow)).samples == 4  # the rest, once


async def test_old_buckets_of_a_tier_go_in_batches(uow: StorageFactory) -> None:
    await add(uow, [sample(3600 * hour) for hour in range(3)])
    await roll_up(uow)

    async with uow() as tx:
        assert await tx.telemetry.delete_rollups(Tier.MINUTE, T0 + timedelta(hours=2), 3) == 3
        await tx.commit()
    async with uow() as tx:
        assert await tx.telemetry.delete_rollups(Tier.MINUTE, T0 + timedelta(hours=2), 3) == 1
        await tx.commit()

    for series in ("bee-001", FLEET):
        assert len(await stored(uow, Tier.MINUTE, series)) == 1
        assert len(await stored(uow, Tier.HOUR, series)) == 3


AGENTS = ("bee-001", "bee-002", "bee-003")
STEPS = (-3600, -30, -1, 0, 0, 1, 10, 10, 10, 29, 30, 31, 59, 600)
"""Seconds from one sample to the next: backwards (a clock set back), the same instant, usual intervals,
gaps just under, at and over GAP, a bucket's length and more."""
percent = st.floats(0, 100, allow_nan=False)
counter = st.none() | st.integers(0, 2000) | st.integers(0, 2**40)
"""Often missing; small, so that counters go down (a reset) as often as up; or large."""


@st.composite
def histories(draw: st.DrawFn) -> list[TelemetrySample]:
    at = T0 - timedelta(seconds=5)
    drawn = []
    for _ in range(draw(st.integers(1, 40))):
        at += timedelta(seconds=draw(st.sampled_from(STEPS)), microseconds=draw(st.integers(0, 999_999)))
        readings = Readings(
            draw(percent), draw(percent), draw(st.none() | percent), draw(counter), draw(counter)
        )
        drawn.append(TelemetrySample(draw(st.sampled_from(AGENTS)), at, readings))
    return drawn


Run = tuple[int, list[tuple[int, bool]], bool]


@st.composite
def runs(draw: st.DrawFn, size: int) -> list[Run]:
    """Where the history is cut into flushes, and after each the rollups made (their batch sizes, and
    whether each is committed) and whether the server restarts then."""
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=5)))
    rollups = st.lists(st.tuples(st.integers(1, 8), st.booleans() | st.just(True)), max_size=4)
    return [(cut, draw(rollups), draw(st.booleans())) for cut in [*cuts, size]]


async def rolled_up(
    uow: StorageFactory,
    history: list[TelemetrySample],
    plan: list[Run],
    restart: Callable[[], Awaitable[None]],
) -> tuple[list[RolledUp], dict[tuple[Tier, str], list[Rollup]]]:
    """The history written and rolled up as planned, then the rest rolled up: what each committed rollup
    answered, and every stored bucket."""
    answers = []
    written = 0
    for cut, rollups, restarted in plan:
        await add(uow, history[written:cut])
        written = max(written, cut)
        for batch, commit in rollups:
            async with uow() as tx:
                done = await tx.telemetry.roll_up(batch, GAP)
                if commit:
                    await tx.commit()
                    answers.append(done)
        if restarted:
            await restart()
    answers.append(await roll_up(uow))
    buckets = {
        (tier, series): await stored(uow, tier, series) for tier in Tier for series in (*AGENTS, FLEET)
    }
    return answers, buckets


async def nothing() -> None:
    """The fake's restart: it keeps nothing outside its store."""


def close(first: float | None, second: float | None) -> bool:
    if first is None or second is None:
        return first is second
    return second == pytest.approx(first, rel=1e-9, abs=1e-6)


@settings(max_examples=120, deadline=None)
@given(data=st.data(), history=histories())
def test_the_sql_rollup_agrees_with_the_reference_for_any_history(
    sqlite_template: Path, data: st.DataObject, history: list[TelemetrySample]
) -> None:
    plan = data.draw(runs(len(history)))
    expected = asyncio.run(rolled_up(FakeUnitOfWorkFactory(), history, plan, nothing))
    with tempfile.TemporaryDirectory() as directory:
        database = Path(directory) / "rollup.db"
        shutil.copy(sqlite_template, database)
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        try:
            # a restart: the pool's connections closed, new ones opened (their temporary tables gone)
            found = asyncio.run(rolled_up(SqlAlchemyUnitOfWorkFactory(engine), history, plan, engine.dispose))
        finally:
            asyncio.run(engine.dispose())

    (expected_answers, expected_buckets), (answers, buckets) = expected, found
    assert [answer.samples for answer in answers] == [answer.samples for answer in expected_answers]
    for answer, wanted in zip(answers, expected_answers, strict=True):
        assert answer.rates.keys() == wanted.rates.keys()
        for agent_id, rates in answer.rates.items():
            assert close(wanted.rates[agent_id].inbound, rates.inbound)
            assert close(wanted.rates[agent_id].outbound, rates.outbound)
    assert buckets.keys() == expected_buckets.keys()
    for key, rollups in buckets.items():
        wanted_rollups = expected_buckets[key]
        assert [rollup.start for rollup in rollups] == [rollup.start for rollup in wanted_rollups], key
        for rollup, wanted_rollup in zip(rollups, wanted_rollups, strict=True):
            assert rollup.totals.increases == wanted_rollup.totals.increases, rollup.key
            for metric, mine, theirs in zip(
                METRICS, rollup.totals.aggregates, wanted_rollup.totals.aggregates, strict=True
            ):
                if theirs is None or mine is None:
                    assert mine is theirs, (rollup.key, metric)
                    continue
                assert (mine.min, mine.max, mine.count) == (theirs.min, theirs.max, theirs.count), (
                    rollup.key,
                    metric,
                )
                assert close(theirs.sum, mine.sum), (rollup.key, metric)
