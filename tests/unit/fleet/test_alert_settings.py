"""The alert thresholds, read from the environment."""

from __future__ import annotations

import pytest

from worpen_api.settings import Settings, SettingsError


def test_thresholds_and_margin_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "WORPEN_ALERT_CPU_PERCENT": "85",
            "WORPEN_ALERT_MEMORY_PERCENT": "92.5",
            "WORPEN_ALERT_DISK_PERCENT": "80",
            "WORPEN_ALERT_CLEAR_MARGIN": "10",
            "WORPEN_DOCKER_HOSTS": "none",
        }
    )

    policy = settings.policy
    assert (policy.cpu_high, policy.memory_high, policy.disk_high, policy.clear_margin) == (85, 92.5, 80, 10)


def test_the_defaults_are_ninety_percent_and_a_margin_of_five() -> None:
    policy = Settings.from_env({"WORPEN_DOCKER_HOSTS": "none"}).policy

    assert (policy.cpu_high, policy.memory_high, policy.disk_high, policy.clear_margin) == (90, 90, 90, 5)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WORPEN_ALERT_CPU_PERCENT": "101"}, "WORPEN_ALERT_CPU_PERCENT must be between 1 and 100"),
        ({"WORPEN_ALERT_DISK_PERCENT": "full"}, "WORPEN_ALERT_DISK_PERCENT must be a number"),
        (
            {"WORPEN_ALERT_MEMORY_PERCENT": "20", "WORPEN_ALERT_CLEAR_MARGIN": "20"},
            "WORPEN_ALERT_CLEAR_MARGIN (20) must be below every alert threshold (the lowest is 20)",
        ),
    ],
)
def test_a_threshold_out_of_range_or_a_margin_that_would_never_clear_is_refused(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**environ, "WORPEN_DOCKER_HOSTS": "none"})
    assert message in str(refused.value)
