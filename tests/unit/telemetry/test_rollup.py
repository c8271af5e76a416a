"""Rollups, as a property: whatever the samples and however they are written and rolled up (in batches of
any size, by servers restarted in between), the minute and hour buckets of each agent and of the fleet
agree with a direct computation over the raw samples."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.fleet.model import FleetPolicy, TelemetrySample
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.telemetry.model import FLEET, METRICS, TelemetryPolicy, Tier
from worpen_core.telemetry.service import Telemetry

MAX_GAP = timedelta(seconds=30)
T0 = datetime(2026, 1, 1, 0, 58, 50, tzinfo=UTC)
"""Just before a minute's and an hour's end: histories cross both."""
AGENTS = ("bee-001", "bee-002", "bee-003")
STEPS = (0, 1, 5, 10, 10, 10, 25, 30, 31, 59, 61, 400, 3600)
"""Seconds between samples: the same instant, usual intervals, gaps just under and over MAX_GAP, an hour."""

percent = st.floats(0, 100, allow_nan=False)
counter = st.integers(0, 2000)
"""Small, so counters often go down (a reset) as well as up."""


@st.composite
def samples(draw: st.DrawFn) -> list[TelemetrySample]:
    at = T0
    drawn = []
    for _ in range(draw(st.integers(1, 40))):
        at += timedelta(seconds=draw(st.sampled_from(STEPS)), microseconds=draw(st.integers(0, 999_999)))
        readings = Readings(
            draw(percent),
            draw(percent),
            draw(st.none() | percent),
            draw(st.none() | counter),
            draw(st.none() | counter),
        )
        drawn.append(TelemetrySample(draw(st.sampled_from(AGENTS)), at, readings))
    return drawn


@dataclass
class Expected:
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    increases: list[int] = field(default_factory=lambda: [0, 0])


def direct(history: list[TelemetrySample]) -> dict[tuple[int, str, datetime], Expected]:
    """The buckets computed from the raw samples, in the order they were written."""
    buckets: dict[tuple[int, str, datetime], Expected] = defaultdict(Expected)
    last: dict[str, tuple[datetime, tuple[int | None, int | None]]] = {}
    for sample in history:
        readings = sample.readings
        counters = (readings.net_rx_bytes, readings.net_tx_bytes)
        rates: list[float | None] = [None, None]
        increases = [0, 0]
        previous = last.get(sample.agent_id)
        if previous is not None:
            seconds = (sample.at - previous[0]).total_seconds()
            for index, (before, now) in enumerate(zip(previous[1], counters, strict=True)):
                if 0 < seconds <= MAX_GAP.total_seconds() and before is not None and now is not None:
                    increases[index] = now - before if now >= before else now
                    rates[index] = increases[index] / seconds
        if previous is None or sample.at > previous[0]:
            last[sample.agent_id] = (sample.at, counters)
        values = dict(zip(METRICS, (readings.cpu, readings.ram, readings.disk, *rates), strict=True))
        for tier in Tier:
            stamp = sample.at.timestamp()
            start = datetime.fromtimestamp(stamp - stamp % tier, UTC)
            for series in (sample.agent_id, FLEET):
                bucket = buckets[(int(tier), series, start)]
                for metric, value in values.items():
                    if value is not None:
                        bucket.values[metric].append(value)
                bucket.increases = [held + new for held, new in zip(bucket.increases, increases, strict=True)]
    return buckets


async def written_and_rolled_up(
    history: list[TelemetrySample], cuts: list[int], batch: int, restarts: list[bool]
) -> FakeUnitOfWorkFactory:
    uow = FakeUnitOfWorkFactory()
    fleet = Fleet(uow, FakeEventBus(), FakeClock(), FleetPolicy(offline_after=MAX_GAP))
    telemetry = Telemetry(uow, FakeClock(), fleet, TelemetryPolicy(batch=batch))
    bounds = [0, *sorted(cuts), len(history)]
    for (start, end), restart in zip(pairwise(bounds), restarts, strict=False):
        async with uow() as tx:  # a flush
            await tx.samples.add(history[start:end])
            await tx.commit()
        if restart:
            telemetry = Telemetry(uow, FakeClock(), fleet, TelemetryPolicy(batch=batch))
        await telemetry.roll_up()
    await Telemetry(uow, FakeClock(), fleet, TelemetryPolicy(batch=batch)).roll_up()  # nothing twice
    return uow


@settings(max_examples=150, deadline=None)
@given(
    history=samples(),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    batch=st.integers(1, 8),
    restarts=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_rollups_agree_with_the_raw_samples_however_they_are_batched_and_restarted(
    history: list[TelemetrySample], cuts: list[int], batch: int, restarts: list[bool]
) -> None:
    cuts = [min(cut, len(history)) for cut in cuts]
    uow = asyncio.run(written_and_rolled_up(history, cuts, batch, restarts))

    expected = direct(history)
    stored = uow.store.rollups
    assert {(int(tier), series, start) for tier, series, start in stored} == set(expected)
    for (tier, series, start), rollup in stored.items():
        wanted = expected[(int(tier), series, start)]
        assert list(rollup.totals.increases) == wanted.increases
        for metric, found in zip(METRICS, rollup.totals.aggregates, strict=True):
            values = wanted.values.get(metric, [])
            if not values:
                assert found is None
                continue
            assert found is not None
            assert (found.min, found.max, found.count) == (min(values), max(values), len(values))
            assert math.isclose(found.mean, sum(values) / len(values), rel_tol=1e-9, abs_tol=1e-9)
    assert uow.store.watermark == len(history)
