"""The pipelines' settings, read from the environment."""

from __future__ import annotations

import pytest

from worpen_api.settings import Settings, SettingsError


def test_pipeline_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "WORPEN_DOCKER_HOSTS": "none",
            "WORPEN_PIPELINE_LOCAL_REPOS": "/srv/git:/home/ops/repos",
            "WORPEN_PIPELINE_NODE_SLOTS": "4",
            "WORPEN_PIPELINE_NODE_LABELS": "edge-1:region=eu,gpu=true; edge-2:region=us",
            "WORPEN_PIPELINE_LEASE_SECONDS": "30",
            "WORPEN_SECRETS_KEY_FILE": "/etc/worpen/secrets.key",
        }
    ).pipelines

    assert settings.local_repos == ("/srv/git", "/home/ops/repos")
    assert settings.node_slots == 4
    assert settings.node_labels == {"edge-1": {"region": "eu", "gpu": "true"}, "edge-2": {"region": "us"}}
    assert settings.lease_seconds == 30
    assert settings.key_file("sqlite+aiosqlite:///worpen.db") == "/etc/worpen/secrets.key"


def test_the_secrets_key_file_lives_beside_the_database_unless_one_is_named() -> None:
    settings = Settings(database_url="sqlite+aiosqlite:////var/lib/worpen/worpen.db")

    assert settings.pipelines.key_file(settings.database_url) == "/var/lib/worpen/worpen-secrets.key"
    assert settings.pipelines.key_file("postgresql+asyncpg://db/worpen") == "worpen-secrets.key"
    assert Settings.from_env({"WORPEN_DOCKER_HOSTS": "none"}).pipelines.local_repos == ()


def test_node_labels_that_are_not_node_key_value_are_refused() -> None:
    with pytest.raises(SettingsError, match="WORPEN_PIPELINE_NODE_LABELS"):
        Settings.from_env({"WORPEN_DOCKER_HOSTS": "none", "WORPEN_PIPELINE_NODE_LABELS": "edge-1 region=eu"})
