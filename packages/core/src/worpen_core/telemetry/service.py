"""Telemetry history: the rollup and retention of the tiers, the series read from them, the load forecast,
and each agent's latest network rates."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import InvalidInput
from worpen_core.shared.ports import Clock
from worpen_core.telemetry.forecast import forecast
from worpen_core.telemetry.model import (
    COUNTERS,
    FLEET,
    MAX_POINTS,
    NetworkRates,
    Range,
    TelemetryPolicy,
    Tier,
    Totals,
    Window,
    floor,
    window,
)
from worpen_core.telemetry.ports import TelemetryUnitOfWorkFactory

SEASON = timedelta(days=1)
"""The load's season: a day, in hourly buckets."""
SEASON_HOURS = 24
FIT_HISTORY = timedelta(days=7)
"""How far back the load forecast looks at least (hour tier); further when the range is longer."""
AHEAD = 4
"""The load forecast extends past now by the range divided by this."""


@dataclass(frozen=True, slots=True)
class NetworkSeries:
    """Bytes/s received and sent, per bucket (starting at each timestamp): one agent's, or summed over
    the fleet. None where a bucket has no data."""

    timestamps: list[datetime]
    inbound: list[float | None]
    outbound: list[float | None]


@dataclass(frozen=True, slots=True)
class LoadSeries:
    """The fleet's mean cpu (percent) per bucket, and its forecast. The last quarter of the timestamps are
    in the future: `actual` is None there; `predicted` covers every timestamp."""

    timestamps: list[datetime]
    actual: list[float | None]
    predicted: list[float | None]


class Telemetry:
    def __init__(
        self, uow: TelemetryUnitOfWorkFactory, clock: Clock, fleet: Fleet, policy: TelemetryPolicy
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._fleet = fleet
        self.policy = policy
        self._rolling = asyncio.Lock()
        self._rates: dict[str, NetworkRates] = {}

    async def roll_up(self) -> int:
        """Roll up the samples written since the last run, a batch per transaction; returns how many.

        Each transaction merges its batch into the stored buckets and moves the watermark and the agents'
        last counters with them: a run that fails changes nothing, a new one (after a restart too)
        starts where the last committed one ended. The store does the arithmetic (the SQL store in the
        database, so that the samples never pass through Python: the event loop goes on answering
        heartbeats). Rates across an offline gap are left out: the fleet's `offline_after` is the longest
        interval they are measured on."""
        rolled = 0
        async with self._rolling:
            while True:
                async with self._uow() as uow:
                    done = await uow.telemetry.roll_up(self.policy.batch, self._fleet.policy.offline_after)
                    await uow.commit()
                self._rates.update(done.rates)
                rolled += done.samples
                if done.samples < self.policy.batch:
                    return rolled

    async def forget(self) -> int:
        """Delete what is older than each tier keeps (raw samples only once rolled up), a batch per
        transaction; returns how many rows."""
        now = self._clock.now()
        policy = self.policy
        deleted = 0
        for tier, kept in (
            (None, policy.raw_retention),
            (Tier.MINUTE, policy.minute_retention),
            (Tier.HOUR, policy.hour_retention),
        ):
            deleted += await self._in_batches(tier, now - kept)
        return deleted

    async def network(self, range: Range, node: str | None = None, points: int = MAX_POINTS) -> NetworkSeries:
        """Bytes/s in and out over `range`, summed over the fleet or of `node` (NotFound if unknown), in
        at most `points` buckets. The last bucket is the last complete one (see `window`)."""
        shown = self._window(range.span, points)
        if node is not None:
            self._fleet.get(node)
        buckets = await self._buckets(shown, node or FLEET)
        inbound, outbound = (
            [None if bucket is None else bucket.rate(counter, shown.step) for bucket in buckets]
            for counter in COUNTERS
        )
        return NetworkSeries(shown.timestamps(), inbound, outbound)

    async def load(self, range: Range, points: int = MAX_POINTS) -> LoadSeries:
        """The fleet's mean cpu over `range` and its forecast, which extends a quarter of the range past
        the last complete bucket; at most `points` timestamps in all.

        The forecast is Holt-Winters (additive, daily season) on the hourly means of at least the last
        seven days when they hold two days or more, read at each bucket's middle; Holt's linear trend on
        the shown buckets otherwise. `predicted` at a past bucket is the one-step-ahead prediction made
        before it, never the value itself."""
        shown = self._window(range.span, points, range.span / AHEAD)
        actual = [
            None if bucket is None else bucket.mean("cpu") for bucket in await self._buckets(shown, FLEET)
        ]
        predicted = await self._seasonal(shown, range.span)
        if predicted is None:
            predicted = forecast(actual, shown.ahead)
        clamped = [None if value is None else min(100.0, max(0.0, value)) for value in predicted]
        return LoadSeries(shown.timestamps(), actual + [None] * shown.ahead, clamped)

    def network_rates(self) -> Mapping[str, NetworkRates]:
        """Each agent's latest rates, as of the last rollup run of this server."""
        return self._rates

    async def _seasonal(self, shown: Window, span: timedelta) -> list[float | None] | None:
        """The seasonal forecast at each of the window's timestamps, or None without two days of history."""
        end = floor(self._clock.now() - self.policy.settle, Tier.HOUR)
        hours = math.ceil(max(FIT_HISTORY, span + SEASON) / timedelta(hours=1))
        history = Window(Tier.HOUR, Tier.HOUR, end, hours)
        means = [
            None if bucket is None else bucket.mean("cpu") for bucket in await self._buckets(history, FLEET)
        ]
        first = next((index for index, value in enumerate(means) if value is not None), len(means))
        if len(means) - first < 2 * SEASON_HOURS:
            return None
        last = shown.end + timedelta(seconds=shown.step * shown.ahead)
        horizon = max(0, math.ceil((last - end) / timedelta(hours=1))) + 1
        hourly = forecast(means, horizon, SEASON_HOURS)
        half = timedelta(seconds=shown.step / 2)
        return [_interpolate(hourly, history.start, at + half) for at in shown.timestamps()]

    def _window(self, span: timedelta, points: int, ahead: timedelta = timedelta()) -> Window:
        if not 1 <= points <= MAX_POINTS:
            raise InvalidInput(f"must be between 1 and {MAX_POINTS}, got {points}", "points")
        return window(self._clock.now(), span, points, self.policy.settle, ahead)

    async def _buckets(self, shown: Window, series: str) -> list[Totals | None]:
        async with self._uow() as uow:
            return await uow.telemetry.buckets(shown.tier, series, shown.start, shown.step, shown.past)

    async def _in_batches(self, tier: Tier | None, before: datetime) -> int:
        """Delete the raw samples (tier None) or the buckets of `tier` before `before`, a batch per
        transaction."""
        deleted = 0
        while True:
            async with self._uow() as uow:
                store = uow.telemetry
                if tier is None:
                    count = await store.delete_samples(before, self.policy.batch)
                else:
                    count = await store.delete_rollups(tier, before, self.policy.batch)
                await uow.commit()
            deleted += count
            if count < self.policy.batch:
                return deleted


def _interpolate(hourly: Sequence[float | None], origin: datetime, at: datetime) -> float | None:
    """The hourly values (the first bucket starting at `origin`) read at `at`, linearly between the
    buckets' middles; None where the values are."""
    position = (at - origin) / timedelta(hours=1) - 0.5
    index = min(max(0, math.floor(position)), len(hourly) - 2)
    before, after = hourly[index], hourly[index + 1]
    if before is None:
        return after
    if after is None:
        return before
    fraction = min(1.0, max(0.0, position - index))
    return before + (after - before) * fraction
