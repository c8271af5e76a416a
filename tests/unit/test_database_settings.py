"""The database's and the replicas' settings, read from the environment."""

from __future__ import annotations

import os

import pytest

from worpen_api.settings import DatabaseSettings, ReplicaSettings, Settings, SettingsError, local_node_name


def settings(**environ: str) -> Settings:
    return Settings.from_env({"WORPEN_DOCKER_HOSTS": "none", **environ})


def test_the_pool_and_timeouts_come_from_the_environment() -> None:
    database = settings(
        WORPEN_DATABASE_POOL_SIZE="25",
        WORPEN_DATABASE_STATEMENT_TIMEOUT="2.5",
        WORPEN_DATABASE_CONNECT_TIMEOUT="0.5",
    ).database

    assert database == DatabaseSettings(pool_size=25, statement_timeout=2.5, connect_timeout=0.5)


def test_by_default_ten_connections_30_s_statements_and_5_s_to_connect() -> None:
    assert settings().database == DatabaseSettings(pool_size=10, statement_timeout=30.0, connect_timeout=5.0)


def test_the_replica_is_named_by_its_host_and_process_unless_told_and_leases_last_10_s() -> None:
    assert settings().replicas == ReplicaSettings(
        replica_id=f"{local_node_name()}-{os.getpid()}", lease_seconds=10.0
    )
    told = settings(WORPEN_REPLICA_ID="replica-b", WORPEN_LEASE_SECONDS="2.5").replicas

    assert (told.replica_id, told.lease_seconds) == ("replica-b", 2.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORPEN_DATABASE_POOL_SIZE", "0"),
        ("WORPEN_DATABASE_POOL_SIZE", "1001"),
        ("WORPEN_DATABASE_POOL_SIZE", "2.5"),
        ("WORPEN_DATABASE_POOL_SIZE", "many"),
        ("WORPEN_DATABASE_STATEMENT_TIMEOUT", "0"),
        ("WORPEN_DATABASE_STATEMENT_TIMEOUT", "-1"),
        ("WORPEN_DATABASE_STATEMENT_TIMEOUT", "forever"),
        ("WORPEN_DATABASE_CONNECT_TIMEOUT", "0.05"),
        ("WORPEN_DATABASE_CONNECT_TIMEOUT", "601"),
        ("WORPEN_LEASE_SECONDS", "0.1"),
        ("WORPEN_LEASE_SECONDS", "3601"),
        ("WORPEN_LEASE_SECONDS", "soon"),
    ],
)
def test_unusable_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings(**{name: value})


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("WORPEN_DATABASE_POOL_SIZE", "1", "1000"),
        ("WORPEN_DATABASE_STATEMENT_TIMEOUT", "0.1", "86400"),
        ("WORPEN_DATABASE_CONNECT_TIMEOUT", "0.1", "600"),
        ("WORPEN_LEASE_SECONDS", "0.5", "3600"),
    ],
)
def test_the_bounds_themselves_are_accepted(name: str, low: str, high: str) -> None:
    for value in (low, high):
        settings(**{name: value})
