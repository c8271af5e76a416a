"""Appends that readers follow by id (the journal, the log, telemetry samples) commit in id order, even
from concurrent transactions (on PostgreSQL, several replicas): while one append is uncommitted, a later
one is not visible before it, so a reader that took an id never misses a smaller one committed later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

from tests.contract.migrated import MigratedUrl
from worpen_core.events.model import EventRecord
from worpen_core.fleet.model import TelemetrySample
from worpen_core.fleet.readings import Readings
from worpen_core.logs.model import Level, LogFilter, LogLine
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWork, SqlAlchemyUnitOfWorkFactory

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def append_event(tx: SqlAlchemyUnitOfWork, n: int) -> None:
    await tx.events.append([EventRecord(T0, "AgentWentOffline", f"bee-{n}", {"n": n})])


async def read_events(tx: SqlAlchemyUnitOfWork) -> list[str]:
    return [event.subject for event in await tx.events.after(0, 10)]


async def append_log(tx: SqlAlchemyUnitOfWork, n: int) -> None:
    await tx.logs.append([LogLine(T0, Level.INFO, "bee", f"line {n}", {})])


async def read_logs(tx: SqlAlchemyUnitOfWork) -> list[str]:
    return [entry.message for entry in await tx.logs.after(0, 10, LogFilter())]


async def append_sample(tx: SqlAlchemyUnitOfWork, n: int) -> None:
    await tx.samples.add([TelemetrySample("bee", T0, Readings(float(n), 1.0))])


async def read_samples(tx: SqlAlchemyUnitOfWork) -> list[str]:
    return [f"cpu {sample.readings.cpu:.0f}" for sample in reversed(await tx.samples.for_agent("bee", 10))]


Append = Callable[[SqlAlchemyUnitOfWork, int], Awaitable[None]]
Read = Callable[[SqlAlchemyUnitOfWork], Awaitable[list[str]]]
TABLES = {
    "events": (append_event, read_events, ["bee-1", "bee-2"]),
    "logs": (append_log, read_logs, ["line 1", "line 2"]),
    "samples": (append_sample, read_samples, ["cpu 1", "cpu 2"]),
}


@pytest.fixture(params=["sqlite", "postgresql"])
async def sql(
    request: pytest.FixtureRequest, migrated_url: MigratedUrl
) -> AsyncIterator[SqlAlchemyUnitOfWorkFactory]:
    engine = create_engine(await migrated_url(request.param, "order"))
    yield SqlAlchemyUnitOfWorkFactory(engine)
    await engine.dispose()


@pytest.mark.parametrize("table", list(TABLES))
async def test_a_later_append_is_not_seen_before_an_earlier_one_commits(
    sql: SqlAlchemyUnitOfWorkFactory, table: str
) -> None:
    append, read, both = TABLES[table]

    async def second() -> None:
        async with sql() as tx:
            await append(tx, 2)
            await tx.commit()

    async with sql() as first:
        await append(first, 1)
        later = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        async with sql() as reader:
            assert await read(reader) == []
        assert not later.done()
        await first.commit()
    await later

    async with sql() as reader:
        assert await read(reader) == both
