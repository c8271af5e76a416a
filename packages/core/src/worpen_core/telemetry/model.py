"""Telemetry in tiers, as Netdata keeps it: the raw samples (the fleet's agent_samples), and rollups of
them per minute and per hour. A rollup keeps, for each metric, min, max, sum and count: mergeable, so a
bucket can take samples in any number of passes (samples written late included) and buckets can be merged
into coarser ones for display without the raw data.

Network counters arrive as cumulative bytes; a rollup keeps the per-interval rates (bytes/s, aggregated
like the gauges) and the bytes added over the bucket, so the rate of a bucket, for one agent or summed over
the fleet, is its increase divided by its length."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum

from worpen_core.fleet.model import TelemetrySample
from worpen_core.fleet.readings import READING_NAMES, READINGS, Kind, values_of

FLEET = "*"
"""The series that aggregates every agent's samples. No agent id can be "*" (see shared/ids.py)."""


@dataclass(frozen=True, slots=True)
class TelemetryPolicy:
    """How long each tier is kept, and how much one transaction of the rollup or retention takes on."""

    raw_retention: timedelta = timedelta(hours=24)
    minute_retention: timedelta = timedelta(days=30)
    hour_retention: timedelta = timedelta(days=365)
    batch: int = 5000
    """Raw samples rolled up, or rows deleted, per transaction: the database's write lock is held for
    one batch at a time, so the telemetry flush never waits long."""
    settle: timedelta = timedelta(seconds=15)
    """How long after a bucket ends it is shown: the time its last samples take to be flushed and rolled
    up (about the flush and rollup intervals)."""


class Tier(IntEnum):
    """A rollup tier: its buckets' length in seconds."""

    MINUTE = 60
    HOUR = 3600


GAUGES = tuple(reading.name for reading in READINGS if reading.kind is Kind.PERCENT)
"""The readings rolled up as they are (cpu, ram, disk)."""
COUNTERS = ("net_rx_bytes", "net_tx_bytes")
"""The cumulative counters rolled up as rates and increases."""
RATES = tuple(name.removesuffix("_bytes") + "_rate" for name in COUNTERS)
"""The rate (bytes/s) of each of COUNTERS, over the interval between an agent's consecutive samples."""
METRICS = GAUGES + RATES
"""What a rollup aggregates with min, max, sum and count, in order."""


@dataclass(frozen=True, slots=True)
class Aggregate:
    """min, max, sum and count of some values (at least one)."""

    min: float
    max: float
    sum: float
    count: int

    @classmethod
    def of(cls, value: float) -> Aggregate:
        return cls(value, value, value, 1)

    def merge(self, other: Aggregate | None) -> Aggregate:
        if other is None:
            return self
        return Aggregate(
            min(self.min, other.min), max(self.max, other.max), self.sum + other.sum, self.count + other.count
        )

    @property
    def mean(self) -> float:
        return self.sum / self.count


def _merge(first: Aggregate | None, second: Aggregate | None) -> Aggregate | None:
    return second if first is None else first.merge(second)


@dataclass(frozen=True, slots=True)
class Totals:
    """What a bucket holds: an aggregate per metric of METRICS (None when it had no value for it), and
    the bytes each of COUNTERS grew by."""

    aggregates: tuple[Aggregate | None, ...]
    increases: tuple[int, ...]

    def merge(self, other: Totals) -> Totals:
        return Totals(
            tuple(
                _merge(mine, theirs) for mine, theirs in zip(self.aggregates, other.aggregates, strict=True)
            ),
            tuple(mine + theirs for mine, theirs in zip(self.increases, other.increases, strict=True)),
        )

    def aggregate(self, metric: str) -> Aggregate | None:
        return self.aggregates[METRICS.index(metric)]

    def mean(self, metric: str) -> float | None:
        found = self.aggregate(metric)
        return None if found is None else found.mean

    def rate(self, counter: str, seconds: float) -> float | None:
        """The counter's growth per second over a bucket of `seconds` (for a fleet-wide bucket, the
        agents' rates summed); None if the bucket had no interval to measure it on."""
        index = COUNTERS.index(counter)
        if self.aggregates[len(GAUGES) + index] is None:
            return None
        return self.increases[index] / seconds


@dataclass(frozen=True, slots=True)
class Rollup:
    """One bucket of one tier of one series (an agent id, or FLEET)."""

    tier: Tier
    series: str
    start: datetime
    totals: Totals

    @property
    def key(self) -> tuple[Tier, str, datetime]:
        return self.tier, self.series, self.start


@dataclass(frozen=True, slots=True)
class Counters:
    """An agent's last values of COUNTERS (None where it sent none) and when it sent them: where the
    rates of its next sample start from."""

    at: datetime
    values: tuple[int | None, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """A counter's growth over one interval between an agent's samples."""

    increase: int
    rate: float
    """bytes/s"""


@dataclass(frozen=True, slots=True)
class NetworkRates:
    """An agent's bytes/s over the interval before its latest rolled-up sample; None if unmeasured."""

    inbound: float | None
    outbound: float | None


@dataclass(frozen=True, slots=True)
class RolledUp:
    """What one transaction of the rollup did: how many raw samples it rolled up, and the rates at the new
    last sample of each agent whose last counters it moved."""

    samples: int
    rates: Mapping[str, NetworkRates]


def changes(last: Counters | None, current: Counters, max_gap: timedelta) -> tuple[Change | None, ...]:
    """The growth of each counter from `last` to `current`.

    A counter that went down was reset (the agent restarted): it grew by its new value, as Prometheus'
    rate() counts it. An interval longer than `max_gap` (the agent was offline) or not positive (a
    sample out of order) measures nothing: no spike across an agent's offline time."""
    if last is None:
        return (None,) * len(COUNTERS)
    seconds = (current.at - last.at).total_seconds()
    if seconds <= 0 or seconds > max_gap.total_seconds():
        return (None,) * len(COUNTERS)
    found: list[Change | None] = []
    for before, now in zip(last.values, current.values, strict=True):
        if before is None or now is None:
            found.append(None)
            continue
        increase = now - before if now >= before else now
        found.append(Change(increase, increase / seconds))
    return tuple(found)


def floor(at: datetime, seconds: int) -> datetime:
    """The start of the bucket of `seconds` (aligned on the epoch) that holds `at`."""
    stamp = at.timestamp()
    return datetime.fromtimestamp(stamp - stamp % seconds, UTC)


_Gathering = tuple[list[list[float] | None], list[int]]
"""A bucket being filled: per metric of METRICS [min, max, sum, count] (None until a value came), and
the increases of COUNTERS. Plain lists: the rollup updates them for every sample."""


def _gather(into: _Gathering, values: list[list[float] | None], increases: list[int]) -> None:
    held_values, held_increases = into
    for position, new in enumerate(values):
        if new is None:
            continue
        held = held_values[position]
        if held is None:
            held_values[position] = list(new)
        else:
            held[0] = min(held[0], new[0])
            held[1] = max(held[1], new[1])
            held[2] += new[2]
            held[3] += new[3]
    for position, increase in enumerate(increases):
        held_increases[position] += increase


def _totals(gathering: _Gathering) -> Totals:
    values, increases = gathering
    return Totals(
        tuple(None if v is None else Aggregate(v[0], v[1], v[2], int(v[3])) for v in values), tuple(increases)
    )


_GAUGE_INDEXES = tuple(READING_NAMES.index(name) for name in GAUGES)
_COUNTER_INDEXES = tuple(READING_NAMES.index(name) for name in COUNTERS)


class RollupBuilder:
    """Rolls raw samples up, in the order they are given (the order of their ids): per agent and fleet
    wide, in every tier. `counters` are the agents' last counters before the first sample; `counters`
    after `add` are what the next batch starts from.

    The reference for what a rollup is: a store may compute the same in its own engine (the SQL store
    does, in the database), and the contract tests hold it to this. An agent's sample is measured from its
    latest sample so far (the one with the greatest time among those of lower ids, the first of equals),
    and becomes the latest only if it is later still.

    Samples are gathered per agent and minute, then minutes into hours and into the fleet's series: the
    aggregates are mergeable, so this is the same as gathering each sample into every bucket."""

    def __init__(self, counters: Mapping[str, Counters], max_gap: timedelta) -> None:
        self.counters = dict(counters)
        self.latest: dict[str, tuple[Change | None, ...]] = {}
        """Each agent's changes at its last sample."""
        self._max_gap = max_gap
        self._minutes: dict[tuple[str, int], _Gathering] = {}
        """By agent and minute (seconds since the epoch at its start)."""

    def add(self, samples: Iterable[TelemetrySample]) -> None:
        minutes = self._minutes
        for sample in samples:
            agent_id = sample.agent_id
            readings = values_of(sample.readings)
            current = Counters(sample.at, tuple(readings[index] for index in _COUNTER_INDEXES))
            last = self.counters.get(agent_id)
            found = changes(last, current, self._max_gap)
            if last is None or current.at > last.at:
                self.counters[agent_id] = current
                self.latest[agent_id] = found
            stamp = sample.at.timestamp()
            key = (agent_id, int(stamp - stamp % Tier.MINUTE))
            gathering = minutes.get(key)
            if gathering is None:
                gathering = minutes[key] = ([None] * len(METRICS), [0] * len(COUNTERS))
            held_values, held_increases = gathering
            position = 0
            for index in _GAUGE_INDEXES:
                value = readings[index]
                if value is not None:
                    _take(held_values, position, value)
                position += 1
            for counter, change in enumerate(found):
                if change is not None:
                    _take(held_values, position, change.rate)
                    held_increases[counter] += change.increase
                position += 1

    def rates(self) -> dict[str, NetworkRates]:
        """The rates at each agent's new last sample (of the agents whose last counters moved)."""
        found = {}
        for agent_id, latest in self.latest.items():
            inbound, outbound = (None if change is None else change.rate for change in latest)
            found[agent_id] = NetworkRates(inbound, outbound)
        return found

    def rollups(self) -> list[Rollup]:
        """The buckets of what was added: each agent's and the fleet's, per minute and per hour."""
        buckets: dict[tuple[Tier, str, int], _Gathering] = {}
        for (agent_id, minute), (values, increases) in self._minutes.items():
            for tier in Tier:
                start = minute - minute % tier
                for series in (agent_id, FLEET):
                    key = (tier, series, start)
                    held = buckets.get(key)
                    if held is None:
                        buckets[key] = ([None if v is None else list(v) for v in values], list(increases))
                    else:
                        _gather(held, values, increases)
        return [
            Rollup(tier, series, datetime.fromtimestamp(start, UTC), _totals(gathering))
            for (tier, series, start), gathering in sorted(buckets.items())
        ]


def _take(values: list[list[float] | None], position: int, value: float) -> None:
    held = values[position]
    if held is None:
        values[position] = [value, value, value, 1]
    else:
        if value < held[0]:
            held[0] = value
        if value > held[1]:
            held[1] = value
        held[2] += value
        held[3] += 1


class Range(StrEnum):
    """The spans the dashboard shows."""

    HOUR = "1h"
    SIX_HOURS = "6h"
    DAY = "24h"
    WEEK = "7d"

    @property
    def span(self) -> timedelta:
        return _SPANS[self]


_SPANS = {
    Range.HOUR: timedelta(hours=1),
    Range.SIX_HOURS: timedelta(hours=6),
    Range.DAY: timedelta(hours=24),
    Range.WEEK: timedelta(days=7),
}

MAX_POINTS = 500
"""The most points a series has."""
ENOUGH_BUCKETS = 60
"""A tier is coarse enough for a range when it has this many buckets over it (or as many as asked)."""


def choose_tier(span: timedelta, points: int) -> Tier:
    """The coarsest tier with at least min(points, ENOUGH_BUCKETS) buckets over `span`; the finest if
    none has."""
    wanted = min(points, ENOUGH_BUCKETS)
    for tier in sorted(Tier, reverse=True):
        if span.total_seconds() / tier >= wanted:
            return tier
    return min(Tier)


@dataclass(frozen=True, slots=True)
class Window:
    """The buckets a series is shown in: `past` complete buckets of `step` seconds (a multiple of the
    tier's, aligned on the epoch) ending at `end`, then `ahead` buckets in the future."""

    tier: Tier
    step: int
    end: datetime
    past: int
    ahead: int = 0

    @property
    def start(self) -> datetime:
        return self.end - timedelta(seconds=self.step * self.past)

    def timestamps(self) -> list[datetime]:
        """Each bucket's start, the future's included."""
        return [self.start + timedelta(seconds=self.step * i) for i in range(self.past + self.ahead)]

    def gather(self, rollups: Iterable[Rollup]) -> list[Totals | None]:
        """The rollups (of this window's tier) merged into the window's past buckets; None for a bucket
        without data."""
        buckets: list[Totals | None] = [None] * self.past
        origin = self.start
        for rollup in rollups:
            index = int((rollup.start - origin).total_seconds()) // self.step
            if 0 <= index < self.past:
                held = buckets[index]
                buckets[index] = rollup.totals if held is None else held.merge(rollup.totals)
        return buckets


def window(
    now: datetime, span: timedelta, points: int, settle: timedelta, ahead: timedelta = timedelta()
) -> Window:
    """The window that shows `span` up to now (and `ahead` past it) in at most `points` buckets.

    A bucket is shown once it is complete and `settle` has passed since it ended (the time its last
    samples take to be flushed and rolled up): the current, incomplete bucket would read low."""
    tier = choose_tier(span, points)
    steps = 1
    while True:
        step = tier * steps
        past = math.ceil(span.total_seconds() / step)
        future = math.ceil(ahead.total_seconds() / step)
        if past + future <= points or past == 1:
            break
        steps += 1
    end = floor(now - settle, step)
    return Window(tier, step, end, past, min(future, points - past))
