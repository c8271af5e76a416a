"""The journal's port (EventRepository), against the fake and SQLite (a real file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worpen_api.bootstrap import StorageFactory
from worpen_core.events.model import EventRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(kind: str = "AgentWentOffline", minutes: int = 0, subject: str = "bee-001") -> EventRecord:
    at = T0 + timedelta(minutes=minutes)
    return EventRecord(at, kind, subject, {"agent_id": subject, "at": at.isoformat(), "tags": ["a", 1, None]})


async def append(uow: StorageFactory, *records: EventRecord) -> list[int]:
    async with uow() as tx:
        ids = await tx.events.append(records)
        await tx.commit()
    return ids


async def test_appended_events_come_back_whole_numbered_in_order(uow: StorageFactory) -> None:
    first = await append(uow, record(minutes=0), record("ContainerDied", 1, "node-a/web"))
    second = await append(uow, record(minutes=2))

    assert first[0] < first[1] < second[0]
    async with uow() as tx:
        found = await tx.events.after(0, 10)
    assert [event.id for event in found] == [*first, *second]
    assert (found[1].type, found[1].subject, found[1].at) == (
        "ContainerDied",
        "node-a/web",
        T0 + timedelta(minutes=1),
    )
    assert found[1].payload == record("ContainerDied", 1, "node-a/web").payload


async def test_reads_after_an_id_and_the_newest_by_type(uow: StorageFactory) -> None:
    ids = await append(uow, *(record("ContainerDied" if n % 2 else "AgentWentOffline", n) for n in range(6)))

    async with uow() as tx:
        assert [e.id for e in await tx.events.after(ids[1], 2)] == ids[2:4]
        assert [e.id for e in await tx.events.after(0, 10, frozenset({"ContainerDied"}))] == ids[1::2]
        assert [e.id for e in await tx.events.latest(2)] == ids[4:]
        assert [e.id for e in await tx.events.latest(2, frozenset({"AgentWentOffline"}))] == [ids[2], ids[4]]


async def test_what_a_transaction_appends_is_gone_unless_committed(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.events.append([record()])

    async with uow() as tx:
        assert await tx.events.after(0, 10) == []


async def test_pruning_deletes_the_oldest_before_a_time_in_bounded_batches_and_ids_are_not_reused(
    uow: StorageFactory,
) -> None:
    ids = await append(uow, *(record(minutes=n) for n in range(5)))

    async with uow() as tx:
        assert await tx.events.prune(T0 + timedelta(minutes=3), limit=2) == 2
        await tx.commit()
    async with uow() as tx:
        assert await tx.events.prune(T0 + timedelta(minutes=3), limit=2) == 1
        assert await tx.events.prune(T0 + timedelta(minutes=3), limit=2) == 0
        await tx.commit()
    async with uow() as tx:
        assert [e.id for e in await tx.events.after(0, 10)] == ids[3:]
        assert await tx.events.prune(T0 + timedelta(days=1), limit=10) == 2
        await tx.commit()

    [newer] = await append(uow, record(minutes=9))
    assert newer > ids[-1]
