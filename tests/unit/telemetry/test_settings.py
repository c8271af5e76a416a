"""Telemetry's settings, read from the environment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from worpen_api.settings import Settings, SettingsError
from worpen_core.telemetry.model import TelemetryPolicy


def test_retention_and_intervals_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "WORPEN_TELEMETRY_ROLLUP_INTERVAL": "0.5",
            "WORPEN_TELEMETRY_RETENTION_INTERVAL": "120",
            "WORPEN_TELEMETRY_RAW_HOURS": "48",
            "WORPEN_TELEMETRY_MINUTE_DAYS": "7",
            "WORPEN_TELEMETRY_HOUR_DAYS": "730",
            "WORPEN_DOCKER_HOSTS": "none",
        }
    )

    assert (settings.rollup_interval, settings.retention_interval) == (0.5, 120)
    assert settings.telemetry.raw_retention == timedelta(hours=48)
    assert settings.telemetry.minute_retention == timedelta(days=7)
    assert settings.telemetry.hour_retention == timedelta(days=730)


def test_the_defaults_are_a_day_a_month_and_a_year() -> None:
    settings = Settings.from_env({"WORPEN_DOCKER_HOSTS": "none"})

    assert settings.telemetry == TelemetryPolicy()
    assert (settings.telemetry.raw_retention, settings.telemetry.minute_retention) == (
        timedelta(hours=24),
        timedelta(days=30),
    )
    assert settings.telemetry.hour_retention == timedelta(days=365)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORPEN_TELEMETRY_ROLLUP_INTERVAL", "0"),
        ("WORPEN_TELEMETRY_RAW_HOURS", "forever"),
        ("WORPEN_TELEMETRY_HOUR_DAYS", "-1"),
    ],
)
def test_unusable_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value, "WORPEN_DOCKER_HOSTS": "none"})
