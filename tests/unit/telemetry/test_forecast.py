"""The load forecast: as many points as asked, and a daily pattern followed better than a flat line."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worpen_core.telemetry.forecast import forecast

HOURS_PER_DAY = 24


def daily_sine_with_trend(hour: int) -> float:
    return 40 + 0.05 * hour + 20 * math.sin(2 * math.pi * hour / HOURS_PER_DAY)


@given(
    history=st.lists(st.none() | st.floats(0, 100, allow_nan=False), max_size=80),
    horizon=st.integers(0, 30),
    season=st.none() | st.integers(2, 30),
)
def test_the_forecast_has_a_value_for_each_point_asked(
    history: list[float | None], horizon: int, season: int | None
) -> None:
    predicted = forecast(history, horizon, season)

    assert len(predicted) == len(history) + horizon
    known = next((index for index, value in enumerate(history) if value is not None), None)
    if known is None:
        assert predicted == [None] * len(predicted)
    else:
        assert predicted[:known] == [None] * known
        assert all(value is not None and math.isfinite(value) for value in predicted[known:])


def test_a_daily_sine_with_a_trend_is_followed_better_than_by_a_flat_line() -> None:
    week = [daily_sine_with_trend(hour) for hour in range(7 * HOURS_PER_DAY)]
    truth = [daily_sine_with_trend(hour) for hour in range(len(week), len(week) + HOURS_PER_DAY)]

    ahead = forecast(week, HOURS_PER_DAY, HOURS_PER_DAY)[len(week) :]

    assert all(value is not None for value in ahead)
    error = sum(abs(value - real) for value, real in zip(ahead, truth, strict=True) if value is not None)
    for flat in (week[-1], sum(week) / len(week)):
        assert error < sum(abs(flat - real) for real in truth) / 4


def test_the_fitted_values_are_predictions_not_the_history() -> None:
    week = [daily_sine_with_trend(hour) for hour in range(7 * HOURS_PER_DAY)]

    fitted = forecast(week, 0, HOURS_PER_DAY)

    assert fitted != week
    later = [(value, week[hour]) for hour, value in enumerate(fitted) if hour >= 2 * HOURS_PER_DAY]
    assert sum(abs(value - real) for value, real in later if value is not None) / len(later) < 2


def test_without_a_season_the_trend_is_followed() -> None:
    rising = [10.0 + hour for hour in range(30)]

    ahead = forecast(rising, 5)[30:]

    assert ahead == pytest.approx([40.0 + step for step in range(5)])
