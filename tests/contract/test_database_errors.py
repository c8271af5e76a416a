"""What the SQL adapter answers when PostgreSQL fails it: every failure leaves the unit of work as a core
error (a 503 naming the database, or a Conflict for a lost race), never as the driver's own exception."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from tests.postgres_support import create_database
from worpen_core.shared.errors import Conflict, Unavailable
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory, translate


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them) but never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def url() -> str:
    return await create_database("errors", migrated=True)


async def test_a_refused_connection_is_the_database_unavailable() -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/worpen")

    with pytest.raises(Unavailable) as raised:
        async with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
            await tx.agents.get("bee-001")
    assert raised.value.dependency == "database"
    await engine.dispose()


async def test_a_server_that_never_answers_is_unavailable_after_the_connect_timeout(silent_port: int) -> None:
    engine = create_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{silent_port}/worpen", connect_timeout=0.3
    )
    started = time.monotonic()

    with pytest.raises(Unavailable) as raised:
        async with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
            await tx.agents.get("bee-001")
    assert raised.value.dependency == "database"
    assert time.monotonic() - started < 3
    await engine.dispose()


async def test_a_statement_past_the_statement_timeout_is_unavailable_and_the_pool_recovers(url: str) -> None:
    engine = create_engine(url, statement_timeout=0.3)
    holder = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    holding = holder.transaction()
    await holding.start()
    await holder.execute("LOCK TABLE agents IN ACCESS EXCLUSIVE MODE")

    with pytest.raises(Unavailable) as raised:
        async with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
            await tx.agents.get("bee-001")
    assert raised.value.dependency == "database"
    assert "statement timeout" in str(raised.value)

    await holding.rollback()
    await holder.close()
    async with SqlAlchemyUnitOfWorkFactory(engine)() as tx:
        assert await tx.agents.get("bee-001") is None
    await engine.dispose()


async def test_a_connection_the_server_dropped_is_replaced_when_taken_from_the_pool(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    uow = SqlAlchemyUnitOfWorkFactory(engine)
    async with uow() as tx:
        await tx.agents.get("bee-001")
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    await admin.close()

    async with uow() as tx:
        assert await tx.agents.get("bee-001") is None
    await engine.dispose()


async def test_a_deadlock_between_two_units_of_work_is_a_conflict_for_one_of_them(url: str) -> None:
    engine = create_engine(url)
    uow = SqlAlchemyUnitOfWorkFactory(engine)
    first_wrote = asyncio.Event()
    second_wrote = asyncio.Event()

    async def write(mine: str, theirs: str, wrote: asyncio.Event, other_wrote: asyncio.Event) -> None:
        async with uow() as tx:
            await tx.progress.set(mine, 1)
            wrote.set()
            await other_wrote.wait()
            await tx.progress.set(theirs, 2)  # waits for the other, which waits for this one
            await tx.commit()

    outcomes = await asyncio.gather(
        write("a", "b", first_wrote, second_wrote),
        write("b", "a", second_wrote, first_wrote),
        return_exceptions=True,
    )
    await engine.dispose()

    conflicts = [outcome for outcome in outcomes if isinstance(outcome, Conflict)]
    assert len(conflicts) == 1, outcomes
    assert outcomes.count(None) == 1, outcomes
    assert "try again" in str(conflicts[0])


class _Failure(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"failed with {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_serialization_failure_or_deadlock_is_a_conflict_to_retry(sqlstate: str) -> None:
    error = translate(DBAPIError("UPDATE agents SET ...", {}, _Failure(sqlstate)))

    assert isinstance(error, Conflict)
    assert "try again" in str(error)


def test_a_socket_error_is_the_database_unavailable() -> None:
    for raw in (ConnectionRefusedError(111, "Connect call failed"), TimeoutError()):
        error = translate(raw)
        assert isinstance(error, Unavailable)
        assert error.dependency == "database"
        assert error.reason
