"""The leader's lease on PostgreSQL has a connection of its own: with every connection of the requests' pool
held by slow transactions, the leader still renews; a renewal the database blocks gives up within a third
of a lease instead of outliving it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.postgres_support import create_database
from worpen_core.shared.errors import Unavailable
from worpen_infra.clock import SystemClock
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.lease_repository import SqlAlchemyLeases, dedicated_engine

LEASE = timedelta(seconds=3)
POOL = 2
"""The requests' pool: this many connections, and as many more under bursts."""


@pytest.fixture
async def url() -> str:
    return await create_database("leasepool", migrated=True)


@pytest.fixture
async def requests_engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url, pool_size=POOL, statement_timeout=2.0)
    yield engine
    await engine.dispose()


@pytest.fixture
async def lease_engine(url: str, requests_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    engine = dedicated_engine(url, lease_seconds=LEASE.total_seconds(), connect_timeout=5.0)
    yield engine
    await engine.dispose()


@contextlib.asynccontextmanager
async def every_connection_held(engine: AsyncEngine) -> AsyncIterator[None]:
    """Every connection of `engine`'s pool (its size and its overflow) inside an open transaction."""
    async with contextlib.AsyncExitStack() as stack:
        held: list[AsyncConnection] = []
        for _ in range(POOL * 2):
            connection = await stack.enter_async_context(engine.connect())
            await connection.execute(text("SELECT 1"))
            held.append(connection)
        yield


async def test_the_leader_renews_while_every_request_connection_is_held(
    requests_engine: AsyncEngine, lease_engine: AsyncEngine
) -> None:
    leases = SqlAlchemyLeases(lease_engine, SystemClock())
    token = await leases.hold("leader", "a", LEASE)

    async with every_connection_held(requests_engine):
        with pytest.raises(sqlalchemy.exc.TimeoutError):  # a request finds no free connection
            async with requests_engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        renewed = await asyncio.wait_for(leases.hold("leader", "a", LEASE), LEASE.total_seconds())

    assert token is not None
    assert renewed == token


async def test_a_renewal_the_database_blocks_gives_up_within_a_third_of_the_lease(
    requests_engine: AsyncEngine, lease_engine: AsyncEngine
) -> None:
    leases = SqlAlchemyLeases(lease_engine, SystemClock())
    await leases.hold("leader", "a", LEASE)

    async with requests_engine.connect() as blocker:
        # A transaction that locks the lease's row (as a stuck writer would) until it ends.
        await blocker.execute(text("SELECT * FROM leases WHERE name = 'leader' FOR UPDATE"))
        with pytest.raises(Unavailable):
            await asyncio.wait_for(leases.hold("leader", "a", LEASE), LEASE.total_seconds())
        await blocker.rollback()

    assert await leases.hold("leader", "a", LEASE) is not None
