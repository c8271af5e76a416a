"""The Leases contract on the fake, on a SQLite file and on a fresh PostgreSQL database: renewals keep
the token, a takeover after expiry or a release bumps it, and of many replicas racing for one lease
exactly one wins."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.contract.migrated import MigratedUrl
from tests.fakes.clock import FakeClock
from tests.fakes.leases import FakeLeases
from tests.postgres_support import admin_url
from worpen_core.shared.errors import Unavailable
from worpen_core.shared.ports import Leases
from worpen_infra.clock import SystemClock
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.lease_repository import SqlAlchemyLeases

TTL = timedelta(seconds=30)


@dataclass
class Backend:
    name: str
    leases: Leases
    expire: Expire
    """Make every lease held now expire, as time passing would."""


class Expire:
    def __init__(self, clock: FakeClock | None, ttl: timedelta) -> None:
        self._clock = clock
        self._ttl = ttl

    async def __call__(self) -> None:
        if self._clock is not None:
            self._clock.advance(self._ttl.total_seconds() + 1)
        else:
            await asyncio.sleep(self._ttl.total_seconds() + 0.05)


SHORT = timedelta(seconds=0.3)
"""The ttl of the leases a test lets expire on a real database, whose clock the test cannot move."""


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, migrated_url: MigratedUrl) -> AsyncIterator[Backend]:
    if request.param == "fake":
        clock = FakeClock()
        yield Backend("fake", FakeLeases(clock), Expire(clock, TTL))
        return
    engine = create_engine(await migrated_url(request.param, "leases"))
    yield Backend(request.param, SqlAlchemyLeases(engine, SystemClock()), Expire(None, SHORT))
    await engine.dispose()


def ttl_for(backend: Backend) -> timedelta:
    """A ttl the test's `expire` outlasts."""
    return TTL if backend.name == "fake" else SHORT


async def test_a_free_lease_is_taken_and_a_renewal_keeps_its_token(backend: Backend) -> None:
    first = await backend.leases.hold("leader", "a", TTL)
    renewed = await backend.leases.hold("leader", "a", TTL)

    assert first is not None
    assert renewed == first


async def test_a_lease_held_by_another_is_refused_until_it_expires(backend: Backend) -> None:
    ttl = ttl_for(backend)
    token = await backend.leases.hold("leader", "a", ttl)
    assert token is not None

    assert await backend.leases.hold("leader", "b", ttl) is None

    await backend.expire()
    taken = await backend.leases.hold("leader", "b", ttl)
    assert taken == token + 1
    assert await backend.leases.hold("leader", "a", ttl) is None


async def test_a_released_lease_is_taken_at_once_with_a_new_token(backend: Backend) -> None:
    token = await backend.leases.hold("leader", "a", TTL)
    assert token is not None

    await backend.leases.release("leader", "a")

    assert await backend.leases.hold("leader", "b", TTL) == token + 1


async def test_only_the_holder_releases(backend: Backend) -> None:
    token = await backend.leases.hold("leader", "a", TTL)

    await backend.leases.release("leader", "b")
    await backend.leases.release("unknown", "a")

    assert await backend.leases.hold("leader", "b", TTL) is None
    assert await backend.leases.hold("leader", "a", TTL) == token


async def test_leases_of_different_names_are_independent(backend: Backend) -> None:
    assert await backend.leases.hold("leader", "a", TTL) is not None
    assert await backend.leases.hold("other", "b", TTL) is not None


async def test_of_many_replicas_racing_for_a_free_lease_exactly_one_wins(backend: Backend) -> None:
    holders = [f"replica-{i}" for i in range(12)]

    tokens = await asyncio.gather(*(backend.leases.hold("leader", holder, TTL) for holder in holders))

    winners = [holder for holder, token in zip(holders, tokens, strict=True) if token is not None]
    assert len(winners) == 1
    assert await backend.leases.hold("leader", winners[0], TTL) is not None


async def test_of_many_replicas_racing_for_an_expired_lease_exactly_one_wins(backend: Backend) -> None:
    ttl = ttl_for(backend)
    first = await backend.leases.hold("leader", "old", ttl)
    assert first is not None
    await backend.expire()
    holders = [f"replica-{i}" for i in range(12)]

    tokens = await asyncio.gather(*(backend.leases.hold("leader", holder, TTL) for holder in holders))

    assert [token for token in tokens if token is not None] == [first + 1]


async def test_an_unreachable_database_is_unavailable() -> None:
    # PostgreSQL on a port nothing listens on: a SQLite file that cannot be opened leaves aiosqlite's
    # thread to report its failure after the test's event loop closed, an error in whichever test runs next.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    admin_url()
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/worpen", connect_timeout=2)
    leases = SqlAlchemyLeases(engine, SystemClock())

    with pytest.raises(Unavailable) as raised:
        await leases.hold("leader", "a", TTL)

    assert raised.value.dependency == "database"
    await engine.dispose()
