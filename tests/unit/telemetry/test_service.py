"""Telemetry's use cases on fakes: series of the fleet and of a node from real heartbeats (through the
fleet's flush), rates across counter resets and gaps, the load and its forecast, retention."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import InvalidInput, NotFound
from worpen_core.telemetry.model import (
    COUNTERS,
    FLEET,
    METRICS,
    Aggregate,
    Counters,
    NetworkRates,
    Range,
    Rollup,
    TelemetryPolicy,
    Tier,
    Totals,
    changes,
)
from worpen_core.telemetry.service import Telemetry

SETTLE = timedelta(seconds=15)
POLICY = TelemetryPolicy(settle=SETTLE, batch=50)
GAP = timedelta(seconds=30)


@pytest.fixture
def fleet(uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock) -> Fleet:
    return Fleet(uow, bus, clock, FleetPolicy(offline_after=GAP))


@pytest.fixture
def telemetry(uow: FakeUnitOfWorkFactory, clock: FakeClock, fleet: Fleet) -> Telemetry:
    return Telemetry(uow, clock, fleet, POLICY)


class Agent:
    """An agent whose counters grow by `rx` and `tx` bytes per second."""

    def __init__(self, fleet: Fleet, agent_id: str, rx: int, tx: int, cpu: float = 20.0) -> None:
        self.fleet, self.id, self.rx, self.tx, self.cpu = fleet, agent_id, rx, tx, cpu
        self.received = self.sent = 0

    def run(self, seconds: int) -> None:
        self.received += self.rx * seconds
        self.sent += self.tx * seconds

    async def beat(self) -> None:
        readings = Readings(self.cpu, 50.0, None, self.received, self.sent)
        await self.fleet.record_heartbeat(RecordHeartbeat(self.id, readings))


async def run(clock: FakeClock, fleet: Fleet, agents: list[Agent], seconds: int, every: int = 10) -> None:
    """Heartbeats from every agent every `every` seconds, flushed as the server does."""
    for _ in range(seconds // every):
        for agent in agents:
            await agent.beat()
        await fleet.flush()
        clock.advance(every)
        for agent in agents:
            agent.run(every)


def full(values: list[float | None]) -> list[float | None]:
    """The values of the buckets between the first and last with data (both partly covered)."""
    known = [index for index, value in enumerate(values) if value is not None]
    return values[known[0] + 1 : known[-1]]


async def test_the_fleet_rate_is_the_agents_rates_summed_and_a_node_has_its_own(
    telemetry: Telemetry, fleet: Fleet, clock: FakeClock
) -> None:
    one, two = Agent(fleet, "bee-001", rx=100, tx=50), Agent(fleet, "bee-002", rx=300, tx=0)
    await run(clock, fleet, [one, two], seconds=600)
    clock.advance(60)
    await telemetry.roll_up()

    everyone = await telemetry.network(Range.HOUR)
    node = await telemetry.network(Range.HOUR, node="bee-001")

    assert len(everyone.timestamps) == len(everyone.inbound) == len(everyone.outbound) == 60
    assert full(everyone.inbound) == [400.0] * 8
    assert full(everyone.outbound) == [50.0] * 8
    assert full(node.inbound) == [100.0] * 8
    assert everyone.inbound[0] is None  # no data: null, not 0


async def test_buckets_are_shown_once_complete_and_settled(
    telemetry: Telemetry, fleet: Fleet, clock: FakeClock
) -> None:
    clock.advance(30)
    now = clock.now()

    series = await telemetry.network(Range.HOUR)

    steps = {later - earlier for earlier, later in pairwise(series.timestamps)}
    assert steps == {timedelta(minutes=1)}
    assert series.timestamps[-1] + timedelta(minutes=1) <= now - SETTLE
    assert series.timestamps[-1] + timedelta(minutes=2) > now - SETTLE


async def test_a_counter_reset_counts_the_new_value_and_a_gap_measures_nothing(
    telemetry: Telemetry, fleet: Fleet, clock: FakeClock
) -> None:
    agent = Agent(fleet, "bee-001", rx=100, tx=100)
    await run(clock, fleet, [agent], seconds=300)
    agent.received = agent.sent = 0  # the agent restarted
    await run(clock, fleet, [agent], seconds=300)
    clock.advance(600)  # offline for ten minutes, its counters growing all along
    agent.run(600)
    await run(clock, fleet, [agent], seconds=300)
    clock.advance(60)
    await telemetry.roll_up()

    series = await telemetry.network(Range.HOUR, node="bee-001")

    measured = [value for value in series.inbound if value is not None]
    assert max(measured) <= 100.0  # no spike across the gap, nothing negative at the reset
    assert min(measured) >= 0
    assert measured.count(100.0) >= 10


def test_rates_between_two_samples() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: int, *values: int | None) -> Counters:
        return Counters(start + timedelta(seconds=seconds), values)

    assert changes(None, at(10, 5, 5), GAP) == (None, None)
    rx, tx = changes(at(0, 1000, 7), at(10, 3000, None), GAP)
    assert rx is not None
    assert (rx.increase, rx.rate, tx) == (2000, 200.0, None)
    reset, _ = changes(at(0, 1000, 0), at(10, 400, 0), GAP)
    assert reset is not None
    assert (reset.increase, reset.rate) == (400, 40.0)
    assert changes(at(0, 0, 0), at(31, 10, 10), GAP) == (None, None)  # longer than the gap
    assert changes(at(10, 0, 0), at(10, 10, 10), GAP) == (None, None)  # the same instant


async def test_each_agents_latest_rates_are_kept_for_the_metrics(
    telemetry: Telemetry, fleet: Fleet, clock: FakeClock
) -> None:
    one, two = Agent(fleet, "bee-001", rx=100, tx=50), Agent(fleet, "bee-002", rx=0, tx=0)
    await run(clock, fleet, [one, two], seconds=30)
    await telemetry.roll_up()

    assert telemetry.network_rates() == {
        "bee-001": NetworkRates(100.0, 50.0),
        "bee-002": NetworkRates(0.0, 0.0),
    }


async def test_an_unknown_node_is_not_found_and_points_are_bounded(
    telemetry: Telemetry, fleet: Fleet, clock: FakeClock
) -> None:
    with pytest.raises(NotFound):
        await telemetry.network(Range.HOUR, node="ghost")
    for points in (0, 501):
        with pytest.raises(InvalidInput):
            await telemetry.network(Range.DAY, points=points)
        with pytest.raises(InvalidInput):
            await telemetry.load(Range.DAY, points=points)


@pytest.mark.parametrize(
    ("range_", "points", "shown", "step"),
    [
        (Range.HOUR, 500, 60, 60),
        (Range.SIX_HOURS, 500, 360, 60),
        (Range.DAY, 500, 480, 180),  # the minute tier, three minutes a point
        (Range.WEEK, 500, 168, 3600),  # the hour tier
        (Range.DAY, 10, 8, 3 * 3600),
        (Range.HOUR, 7, 7, 9 * 60),
    ],
)
async def test_the_coarsest_tier_with_enough_points_is_read_and_never_more_than_asked(
    telemetry: Telemetry, range_: Range, points: int, shown: int, step: int
) -> None:
    series = await telemetry.network(range_, points=points)

    assert len(series.timestamps) == shown <= points
    assert series.timestamps[1] - series.timestamps[0] == timedelta(seconds=step)


@pytest.mark.parametrize("range_", list(Range))
@pytest.mark.parametrize("points", [1, 2, 3, 61, 500])
async def test_the_load_never_has_more_points_than_asked(
    telemetry: Telemetry, range_: Range, points: int
) -> None:
    load = await telemetry.load(range_, points)

    assert 0 < len(load.timestamps) == len(load.actual) == len(load.predicted) <= points


async def test_the_load_is_the_fleets_mean_cpu_and_its_forecast_extends_past_now(
    telemetry: Telemetry, fleet: Fleet, clock: FakeClock
) -> None:
    agents = [Agent(fleet, "bee-001", 0, 0, cpu=20.0), Agent(fleet, "bee-002", 0, 0, cpu=60.0)]
    for minute in range(30):
        for agent in agents:
            agent.cpu += minute % 3
        await run(clock, fleet, agents, seconds=60)
    clock.advance(60)
    await telemetry.roll_up()

    load = await telemetry.load(Range.HOUR)

    assert len(load.timestamps) == len(load.actual) == len(load.predicted) == 60 + 15
    assert load.timestamps[59] + timedelta(minutes=1) <= clock.now()
    assert load.actual[60:] == [None] * 15
    assert all(value is not None for value in load.predicted[60:])
    known = [(value, load.predicted[index]) for index, value in enumerate(load.actual) if value is not None]
    assert len(known) >= 29
    assert known[-1][0] == pytest.approx((agents[0].cpu + agents[1].cpu) / 2)
    assert [predicted for _, predicted in known] != [actual for actual, _ in known]


async def test_with_two_days_of_history_the_forecast_follows_the_daily_pattern(
    uow: FakeUnitOfWorkFactory, telemetry: Telemetry, clock: FakeClock
) -> None:
    def cpu(hour: int) -> float:
        return 50 + 30 * math.sin(2 * math.pi * hour / 24)

    start = clock.now()
    hours = 5 * 24
    seeded = [hourly(start + timedelta(hours=hour), cpu(hour)) for hour in range(hours)]
    uow.store.rollups.update((rollup.key, rollup) for rollup in seeded)
    clock.advance(hours * 3600 + 60)

    load = await telemetry.load(Range.DAY, points=30)

    future = [
        (predicted, cpu(hours + (at - clock.now()) // timedelta(hours=1)))
        for at, actual, predicted in zip(load.timestamps, load.actual, load.predicted, strict=True)
        if actual is None and at >= clock.now() - timedelta(hours=1)
    ]
    assert future
    error = sum(abs(predicted - real) for predicted, real in future if predicted is not None) / len(future)
    flat = sum(abs(50 - real) for _, real in future) / len(future)
    assert error < flat / 2


def hourly(start: datetime, cpu: float) -> Rollup:
    aggregates = [Aggregate.of(cpu) if metric == "cpu" else None for metric in METRICS]
    return Rollup(Tier.HOUR, FLEET, start, Totals(tuple(aggregates), (0,) * len(COUNTERS)))


async def test_retention_deletes_rolled_up_samples_and_old_buckets_in_batches(
    uow: FakeUnitOfWorkFactory, telemetry: Telemetry, fleet: Fleet, clock: FakeClock
) -> None:
    agent = Agent(fleet, "bee-001", 10, 10)
    await run(clock, fleet, [agent], seconds=1200)
    await telemetry.roll_up()
    await run(clock, fleet, [agent], seconds=600)  # not rolled up yet
    rolled = uow.store.watermark
    clock.advance(POLICY.raw_retention.total_seconds() + 3600)

    deleted = await telemetry.forget()

    assert uow.store.sample_ids[0] == rolled  # the sample at the watermark is kept, and all after it
    assert len(uow.store.sample_ids) == 1 + 60
    assert deleted == rolled - 1
    assert uow.store.rollups  # minute and hour buckets are kept longer

    clock.advance(POLICY.minute_retention.total_seconds())
    await telemetry.forget()
    assert {tier for tier, _, _ in uow.store.rollups} == {Tier.HOUR}
