"""Several `worpen serve` replicas on one PostgreSQL database, as an operator runs them behind a load
balancer: same database, same secrets key, each its own ports, replica id and log (see support.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from tests.integration.support import WorpenServer, launch_server
from tests.postgres_support import create_database_sync

SECRETS_KEY = "7jZ_-4eGfafKgCDztCju-F1waX6xIlkAqbmm5mQR98E="
"""One Fernet key for every replica (WORPEN_SECRETS_KEY): a secret sealed by one is opened by the others."""


def replica_settings(
    database_url: str, name: str, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of replica `name` on `database_url`, with `settings` on top."""
    return {
        "WORPEN_DATABASE_URL": database_url,
        "WORPEN_SECRETS_KEY": SECRETS_KEY,
        "WORPEN_REPLICA_ID": name,
        "WORPEN_DOCKER_HOSTS": "none",
        **(settings or {}),
    }


def launch_replica(
    directory: Path,
    database_url: str,
    name: str,
    settings: Mapping[str, str] | None = None,
    ports: tuple[int, int] | None = None,
) -> WorpenServer:
    """Start replica `name` (its log in `directory/<name>/`) without waiting for it."""
    return launch_server(
        directory / name / "unused.db", replica_settings(database_url, name, settings), ports=ports
    )


@contextmanager
def replicas(
    directory: Path, count: int = 2, settings: Mapping[str, str] | None = None
) -> Iterator[list[WorpenServer]]:
    """`count` healthy replicas (named a, b, c...) on a fresh PostgreSQL database; the first one started
    alone, so that it runs the migrations and prints the first admin key (`servers[0].initial_admin_key()`).
    Stopped (SIGKILL if need be) on the way out."""
    database_url = create_database_sync("replicas")
    started: list[WorpenServer] = []
    try:
        for index in range(count):
            server = launch_replica(directory, database_url, "abcdefgh"[index], settings)
            started.append(server)
            server.wait_until_healthy()
        yield started
    finally:
        for server in started:
            if server.stop() not in (0, -signal.SIGKILL):
                print(server.log())


@contextmanager
def admin_clients(servers: list[WorpenServer]) -> Iterator[list[httpx.Client]]:
    """A client of each replica with the admin key the first one printed."""
    key = servers[0].initial_admin_key()
    with ExitStack() as stack:
        yield [stack.enter_context(server.client(key)) for server in servers]
