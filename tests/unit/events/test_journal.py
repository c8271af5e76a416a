"""The journal on fakes: events as recorded (type, subject, JSON fields), reads and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.containers.events import ContainerDied, EngineAvailable
from worpen_core.events.journal import EventJournal
from worpen_core.events.model import EventRecord
from worpen_core.fleet.events import AgentRegistered
from worpen_core.fleet.status import AgentStatus

AT = datetime(2026, 3, 1, 12, 0, 5, 250_000, tzinfo=UTC)


def test_an_event_is_recorded_with_its_type_subject_time_and_fields_as_json() -> None:
    record = EventRecord.of(ContainerDied("node-a", "c0ffee", "web-1", "nginx:1", AT, 137), AT + timedelta(1))

    assert (record.at, record.type, record.subject) == (AT, "ContainerDied", "node-a/web-1")
    assert record.payload == {
        "node": "node-a",
        "container_id": "c0ffee",
        "name": "web-1",
        "image": "nginx:1",
        "at": "2026-03-01T12:00:05.250000Z",
        "exit_code": 137,
        "requested": False,
    }
    assert (
        EventRecord.of(AgentRegistered("bee-001", AT, AgentStatus.ONLINE), AT).payload["status"] == "ONLINE"
    )


async def test_reads_and_retention_go_through_the_store(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
    journal = EventJournal(uow, clock, keep=timedelta(hours=1), buffer=10, prune_batch=2)
    async with uow() as tx:
        old = [
            EventRecord.of(EngineAvailable(f"node-{n}", clock.now() - timedelta(hours=2)), clock.now())
            for n in range(3)
        ]
        new = EventRecord.of(EngineAvailable("node-new", clock.now()), clock.now())
        ids = await tx.events.append([*old, new])
        await tx.commit()

    assert [event.id for event in await journal.read(None, 2)] == ids[2:]
    assert [event.id for event in await journal.read(ids[0], 1)] == ids[1:2]
    assert await journal.prune() == 3
    assert [event.subject for event in await journal.read(0, 10)] == ["node-new"]
