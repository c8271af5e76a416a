"""Forecasts of a series (the fleet's load) from its history, with the standard library only.

Holt-Winters, additive, when the history holds at least two seasons (the dashboard's season is a day);
Holt's linear trend otherwise. The smoothing parameters are chosen by a small grid search on the
one-step-ahead squared error over the history. Missing values (None) are filled with the model's own
prediction, so a gap neither updates nor breaks the model."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import product

ALPHAS = (0.1, 0.3, 0.5, 0.8)
"""Candidates for the level's smoothing."""
BETAS = (0.01, 0.1, 0.3)
"""Candidates for the trend's smoothing."""
GAMMAS = (0.05, 0.2, 0.5)
"""Candidates for the season's smoothing (seasonal models only)."""

Smoothing = tuple[float, float, float]


def forecast(history: Sequence[float | None], horizon: int, season: int | None = None) -> list[float | None]:
    """A value for each point of `history`, its one-step-ahead prediction (made from the points before
    it), then `horizon` predictions past its end: len(history) + horizon values, None before the first
    known value of the history. Seasonal with `season` points per season when the history holds at least
    two from its first known value."""
    first = next((index for index, value in enumerate(history) if value is not None), None)
    if first is None:
        return [None] * (len(history) + horizon)
    data = tuple(history[first:])
    period = season if season is not None and season > 1 and len(data) >= 2 * season else 1
    fitted, _ = _smooth(data, period, _best(data, period), horizon)
    return [*([None] * first), *fitted]


@functools.lru_cache(maxsize=32)
def _best(data: tuple[float | None, ...], period: int) -> Smoothing:
    """The grid's parameters with the least one-step-ahead squared error (cached: a dashboard asks for
    the same history again until a new bucket completes)."""
    gammas = GAMMAS if period > 1 else (0.0,)
    return min(product(ALPHAS, BETAS, gammas), key=lambda smoothing: _smooth(data, period, smoothing, 0)[1])


def _smooth(
    data: tuple[float | None, ...], period: int, smoothing: Smoothing, horizon: int
) -> tuple[list[float], float]:
    """The one-step-ahead predictions of `data` (its first value known) and `horizon` more, and the
    squared error of those made after the initial season."""
    alpha, beta, gamma = smoothing
    first = _mean(data[:period]) or 0.0  # never None: the first value is known
    if period > 1:
        second = _mean(data[period : 2 * period])
        trend = 0.0 if second is None else (second - first) / period
        seasonal = [0.0 if value is None else value - first for value in data[:period]]
    else:
        trend = 0.0 if len(data) < 2 or data[1] is None else data[1] - first
        seasonal = [0.0]
    level = first - trend * (period + 1) / 2  # the first season's mean is its middle's level
    fitted: list[float] = []
    error = 0.0
    for index, observed in enumerate(data):
        slot = index % period
        predicted = level + trend + seasonal[slot]
        fitted.append(predicted)
        if observed is None:
            observed = predicted
        elif index >= period:
            error += (observed - predicted) ** 2
        previous = level
        level = alpha * (observed - seasonal[slot]) + (1 - alpha) * (level + trend)
        trend = beta * (level - previous) + (1 - beta) * trend
        seasonal[slot] = gamma * (observed - level) + (1 - gamma) * seasonal[slot]
    count = len(data)
    fitted.extend(
        level + step * trend + seasonal[(count + step - 1) % period] for step in range(1, horizon + 1)
    )
    return fitted, error


def _mean(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None
