"""The telemetry store's contract, run against the fake and against SQLite (a real file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_api.bootstrap import StorageFactory
from worpen_core.fleet.model import TelemetrySample
from worpen_core.fleet.readings import Readings
from worpen_core.telemetry.model import (
    COUNTERS,
    FLEET,
    METRICS,
    Aggregate,
    Counters,
    RawSample,
    Rollup,
    Tier,
    Totals,
)
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", "sqlite"])
async def uow(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    if request.param == "fake":
        yield FakeUnitOfWorkFactory()
        return
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}")
    await upgrade_database(engine)
    yield SqlAlchemyUnitOfWorkFactory(engine)
    await engine.dispose()


def totals(cpu: Aggregate | None, rx: Aggregate | None = None, increases: tuple[int, int] = (0, 0)) -> Totals:
    aggregates = {"cpu": cpu, "net_rx_rate": rx}
    return Totals(tuple(aggregates.get(metric) for metric in METRICS), increases)


def sample(seconds: int, agent_id: str = "bee-001", rx: int | None = None) -> TelemetrySample:
    return TelemetrySample(agent_id, T0 + timedelta(seconds=seconds), Readings(10.0, 20.0, None, rx, None))


async def add(uow: StorageFactory, samples: list[TelemetrySample]) -> None:
    async with uow() as tx:
        await tx.samples.add(samples)
        await tx.commit()


async def test_samples_are_read_after_an_id_in_order_of_id(uow: StorageFactory) -> None:
    written = [sample(30), sample(10, "bee-002", rx=5), sample(20)]
    await add(uow, written)

    async with uow() as tx:
        everything = await tx.telemetry.samples_after(0, 10)
        rest = await tx.telemetry.samples_after(everything[0].id, 1)

    assert [item.sample for item in everything] == written
    assert [item.id for item in everything] == sorted(item.id for item in everything)
    assert rest == [RawSample(everything[1].id, written[1])]


async def test_buckets_merge_into_what_is_stored(uow: StorageFactory) -> None:
    minute = Rollup(Tier.MINUTE, "bee-001", T0, totals(Aggregate(10, 20, 30, 2), None, (5, 0)))
    later = Rollup(Tier.MINUTE, "bee-001", T0, totals(Aggregate(5, 8, 13, 2), Aggregate(1, 1, 1, 1), (7, 1)))
    hour = Rollup(Tier.HOUR, FLEET, T0, totals(Aggregate(1, 1, 1, 1)))
    async with uow() as tx:
        await tx.telemetry.merge([minute, hour])
        await tx.commit()
    async with uow() as tx:
        await tx.telemetry.merge([later])
        await tx.commit()

    async with uow() as tx:
        minutes = await tx.telemetry.rollups(Tier.MINUTE, "bee-001", T0, T0 + timedelta(minutes=1))
        hours = await tx.telemetry.rollups(Tier.HOUR, FLEET, T0, T0 + timedelta(hours=1))
        nothing = await tx.telemetry.rollups(Tier.MINUTE, FLEET, T0, T0 + timedelta(hours=1))

    merged = totals(Aggregate(5, 20, 43, 4), Aggregate(1, 1, 1, 1), (12, 1))
    assert minutes == [Rollup(Tier.MINUTE, "bee-001", T0, merged)]
    assert hours == [hour]
    assert nothing == []
    assert len(COUNTERS) == len(merged.increases)


async def test_buckets_are_read_in_their_range_in_order(uow: StorageFactory) -> None:
    rollups = [
        Rollup(Tier.MINUTE, FLEET, T0 + timedelta(minutes=minute), totals(Aggregate.of(minute)))
        for minute in (3, 0, 2, 1, 4)
    ]
    async with uow() as tx:
        await tx.telemetry.merge(rollups)
        await tx.commit()

    async with uow() as tx:
        found = await tx.telemetry.rollups(
            Tier.MINUTE, FLEET, T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
        )

    assert [rollup.start for rollup in found] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]


async def test_the_watermark_and_counters_move_together_and_only_from_where_they_were(
    uow: StorageFactory,
) -> None:
    one = Counters(T0, (100, None))
    async with uow() as tx:
        assert await tx.telemetry.watermark() == 0
        assert await tx.telemetry.advance(0, 5, {"bee-001": one})
        await tx.commit()
    async with uow() as tx:
        assert not await tx.telemetry.advance(0, 9, {"bee-001": Counters(T0, (1, 1))})  # stale
        await tx.commit()
    async with uow() as tx:
        assert await tx.telemetry.advance(5, 7, {"bee-002": Counters(T0, (None, 3))})  # rolled back
    two = Counters(T0 + timedelta(seconds=10), (150, 7))
    async with uow() as tx:
        assert await tx.telemetry.advance(5, 8, {"bee-001": two})
        await tx.commit()

    async with uow() as tx:
        assert await tx.telemetry.watermark() == 8
        assert await tx.telemetry.counters({"bee-001", "bee-002", "ghost"}) == {"bee-001": two}


async def test_only_rolled_up_samples_go_and_never_the_one_at_the_watermark(uow: StorageFactory) -> None:
    await add(uow, [sample(seconds) for seconds in range(0, 100, 10)])
    async with uow() as tx:
        ids = [item.id for item in await tx.telemetry.samples_after(0, 100)]
        assert await tx.telemetry.delete_samples(T0 + timedelta(hours=1), 100) == 0  # nothing rolled up
        assert await tx.telemetry.advance(0, ids[5], {})
        await tx.commit()

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
        assert [item.id for item in await tx.telemetry.samples_after(0, 100)] == ids[5:]


async def test_old_buckets_of_a_tier_go_in_batches(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.telemetry.merge(
            [
                Rollup(tier, series, T0 + timedelta(hours=hour), totals(Aggregate.of(1)))
                for tier in Tier
                for series in ("bee-001", FLEET)
                for hour in range(3)
            ]
        )
        await tx.commit()

    async with uow() as tx:
        assert await tx.telemetry.delete_rollups(Tier.MINUTE, T0 + timedelta(hours=2), 3) == 3
        await tx.commit()
    async with uow() as tx:
        assert await tx.telemetry.delete_rollups(Tier.MINUTE, T0 + timedelta(hours=2), 3) == 1
        await tx.commit()

    async with uow() as tx:
        end = T0 + timedelta(hours=3)
        for series in ("bee-001", FLEET):
            assert len(await tx.telemetry.rollups(Tier.MINUTE, series, T0, end)) == 1
            assert len(await tx.telemetry.rollups(Tier.HOUR, series, T0, end)) == 3
