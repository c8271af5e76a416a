"""The registry of agents' streams on the fake, on a SQLite file and on a fresh PostgreSQL database: the
newest connection of an agent wins, the end of an older one leaves it, and a replica's rows go at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.contract.migrated import MigratedUrl
from tests.fakes.agent_registry import FakeAgentRegistry
from worpen_core.agents.model import AgentHello, Connection, StreamHolder
from worpen_core.agents.ports import AgentRegistry
from worpen_infra.sql.agent_stream_repository import SqlAlchemyAgentRegistry
from worpen_infra.sql.database import create_engine

T0 = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
async def registry(request: pytest.FixtureRequest, migrated_url: MigratedUrl) -> AsyncIterator[AgentRegistry]:
    if request.param == "fake":
        yield FakeAgentRegistry()
        return
    engine = create_engine(await migrated_url(request.param, "registry"))
    yield SqlAlchemyAgentRegistry(engine)
    await engine.dispose()


def held(agent_id: str, replica: str, at: datetime = T0, **hello: object) -> StreamHolder:
    greeting = AgentHello(
        agent_id,
        str(hello.get("version", "1.2.3")),
        1,
        frozenset({"docker", "shell"}),
        {"region": "eu", "gpu": "false"},
    )
    return StreamHolder(Connection(greeting, "10.0.0.7:40001", at), replica, f"{replica}.internal:3001")


async def test_a_recorded_stream_reads_back_whole(registry: AgentRegistry) -> None:
    row = held("bee-001", "a")
    await registry.record(row)
    assert await registry.holder("bee-001") == row
    assert await registry.holders() == [row]
    assert await registry.holder("bee-404") is None


async def test_the_newest_connection_wins_and_the_end_of_the_older_one_leaves_it(
    registry: AgentRegistry,
) -> None:
    first = held("bee-001", "a")
    moved = held("bee-001", "b", T0 + timedelta(seconds=3), version="1.2.4")
    await registry.record(first)
    await registry.record(moved)
    await registry.forget(first)
    assert await registry.holder("bee-001") == moved
    again = held("bee-001", "b", T0 + timedelta(seconds=9))
    await registry.record(again)
    await registry.forget(moved)  # the same replica's older stream of that agent
    assert await registry.holder("bee-001") == again
    await registry.forget(again)
    assert await registry.holder("bee-001") is None


async def test_a_replica_that_leaves_takes_only_its_own_rows(registry: AgentRegistry) -> None:
    await registry.record(held("bee-001", "a"))
    await registry.record(held("bee-002", "a"))
    kept = held("bee-003", "b")
    await registry.record(kept)
    await registry.forget_replica("a")
    assert await registry.holders() == [kept]
