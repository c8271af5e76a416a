"""The throwaway PostgreSQL cluster of a test run (scripts/postgres-server.sh starts it and exports its
admin URL as WORPEN_TEST_POSTGRES_URL): a fresh database for each store a test needs."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import uuid

import asyncpg
import pytest

ADMIN_URL_VARIABLE = "WORPEN_TEST_POSTGRES_URL"

_numbers = itertools.count(1)


def admin_url() -> str:
    """The cluster's admin URL (SQLAlchemy form). In CI a missing cluster fails the test; elsewhere it
    skips it, saying how to run it."""
    url = os.environ.get(ADMIN_URL_VARIABLE)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{ADMIN_URL_VARIABLE} is not set: scripts/test starts PostgreSQL for the tests")
    pytest.skip("no PostgreSQL: run through scripts/test, or source scripts/postgres-server.sh first")


def _driver_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(prefix: str = "worpen") -> str:
    """A new empty database on the cluster; its SQLAlchemy URL."""
    admin = admin_url()
    name = f"{prefix}_{os.getpid()}_{next(_numbers)}_{uuid.uuid4().hex[:6]}".lower()
    connection = await asyncpg.connect(_driver_url(admin))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def create_database_sync(prefix: str = "worpen") -> str:
    """`create_database` from synchronous code, even while an event loop runs in this thread."""
    admin_url()
    created: list[str] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            created.append(asyncio.run(create_database(prefix)))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return created[0]
