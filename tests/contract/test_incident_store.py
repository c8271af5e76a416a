"""The incident store, on the fake and on SQLite: incidents and their timelines, the newest-first list,
and at most one open incident per dedup key, held by the store itself against concurrent writers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from worpen_api.bootstrap import StorageFactory
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.model import (
    Incident,
    IncidentPolicy,
    IncidentQuery,
    IncidentReport,
    IncidentStatus,
    ResolutionMethod,
    Severity,
    TimelineEntry,
    TimelineKind,
)
from worpen_core.incidents.ports import IncidentRepository
from worpen_core.incidents.service import Incidents
from worpen_core.shared.errors import Conflict

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def report(service: str = "web-1", node: str = "node-a", issue: str = "container died") -> IncidentReport:
    return IncidentReport(
        service, node, issue, Severity.HIGH, "docker.restart web-1", "CONTAINER_DIED", "r-1"
    )


def opened(at: datetime = T0, **fields: Any) -> tuple[Incident, TimelineEntry]:
    return Incident.open(report(**fields), at)


def incidents_on(uow: StorageFactory, clock: FakeClock | None = None) -> Incidents:
    clock = clock or FakeClock(T0)
    bus = FakeEventBus()
    audit = AuditTrail(uow, clock, bus)
    containers = Containers([], audit, clock, bus, ContainerLimits())
    return Incidents(
        uow, clock, bus, Fleet(uow, bus, clock, FleetPolicy()), containers, audit, IncidentPolicy()
    )


async def add(uow: StorageFactory, incident: Incident, entry: TimelineEntry) -> None:
    async with uow() as tx:
        await tx.incidents.add(incident, [entry])
        await tx.commit()


async def test_an_incident_is_stored_with_its_timeline_and_updated(uow: StorageFactory) -> None:
    incident, first = opened()
    async with uow() as tx:
        await tx.incidents.add(incident, [first])
        await tx.commit()

    later = T0 + timedelta(seconds=5)
    step = incident.step("restarting", "docker.restart web-1", later)
    again = incident.recur(report(), later + timedelta(seconds=1))
    done = incident.resolve("ops", ResolutionMethod.MANUAL, "fixed", later + timedelta(seconds=2))
    async with uow() as tx:
        await tx.incidents.update(incident, [step, again, done])
        await tx.commit()

    async with uow() as tx:
        stored = await tx.incidents.get(incident.id)
        assert await tx.incidents.get("nothing") is None
    assert stored is not None
    assert stored.timeline == (first, step, again, done)
    assert stored.without_timeline() == incident.without_timeline()
    assert (stored.status, stored.occurrences, stored.method, stored.resolved_by, stored.notes) == (
        IncidentStatus.RESOLVED,
        2,
        ResolutionMethod.MANUAL,
        "ops",
        "fixed",
    )
    assert stored.trigger == "CONTAINER_DIED"
    assert stored.rule_id == "r-1"
    assert [entry.kind for entry in stored.timeline] == [
        TimelineKind.OPENED,
        TimelineKind.REMEDIATION,
        TimelineKind.OCCURRENCE,
        TimelineKind.RESOLVED,
    ]


async def test_what_a_transaction_does_not_commit_is_not_stored(uow: StorageFactory) -> None:
    incident, first = opened()
    async with uow() as tx:
        await tx.incidents.add(incident, [first])

    async with uow() as tx:
        assert await tx.incidents.get(incident.id) is None
        assert await tx.incidents.find(incident.dedup_key) is None


async def test_only_one_incident_per_key_is_open_at_a_time(uow: StorageFactory) -> None:
    incident, first = opened()
    await add(uow, incident, first)

    duplicate, entry = opened(T0 + timedelta(seconds=1))
    with pytest.raises(Conflict):
        await add(uow, duplicate, entry)

    incident.fail("gave up", T0 + timedelta(seconds=2))  # FAILED is open too
    async with uow() as tx:
        await tx.incidents.update(incident, [])
        await tx.commit()
    with pytest.raises(Conflict):
        await add(uow, duplicate, entry)

    incident.resolve("ops", ResolutionMethod.MANUAL, "", T0 + timedelta(seconds=3))
    async with uow() as tx:
        await tx.incidents.update(incident, [])
        await tx.incidents.add(duplicate, [entry])  # the key is free once the other is resolved
        await tx.commit()
    async with uow() as tx:
        found = await tx.incidents.find(incident.dedup_key)
    assert found is not None
    assert found.id == duplicate.id


async def test_find_prefers_the_open_incident_then_the_one_resolved_last(uow: StorageFactory) -> None:
    older, older_entry = opened(T0)
    newer, newer_entry = opened(T0 + timedelta(minutes=1))
    async with uow() as tx:
        older.resolve("ops", ResolutionMethod.MANUAL, "", T0 + timedelta(minutes=5))
        await tx.incidents.add(older, [older_entry])
        newer.resolve("ops", ResolutionMethod.AUTO, "", T0 + timedelta(minutes=2))
        await tx.incidents.add(newer, [newer_entry])
        await tx.commit()

    async with uow() as tx:
        found = await tx.incidents.find(older.dedup_key)
        assert found is not None
        assert found.id == older.id
        assert found.timeline == ()
        current, entry = opened(T0 + timedelta(minutes=6))
        await tx.incidents.add(current, [entry])
        await tx.commit()
    async with uow() as tx:
        found = await tx.incidents.find(older.dedup_key)
        assert found is not None
        assert found.id == current.id
        assert await tx.incidents.find(report(node="node-b").dedup_key) is None


async def test_query_filters_and_lists_newest_first(uow: StorageFactory) -> None:
    made = [
        opened(T0, service="web-1"),
        opened(T0 + timedelta(seconds=1), service="web-2"),
        opened(T0 + timedelta(seconds=2), service="web-1", node="node-b"),
        opened(T0 + timedelta(seconds=3), service="web-1", issue="unhealthy"),
    ]
    made[1][0].resolve("ops", ResolutionMethod.MANUAL, "", T0 + timedelta(seconds=4))
    async with uow() as tx:
        for incident, entry in made:
            await tx.incidents.add(incident, [entry])
        await tx.commit()
    ids = [incident.id for incident, _ in made]

    async with uow() as tx:
        everything = await tx.incidents.query(IncidentQuery())
        assert [i.id for i in everything] == ids[::-1]
        assert all(i.timeline == () for i in everything)
        pending = await tx.incidents.query(IncidentQuery(status=IncidentStatus.PENDING))
        assert [i.id for i in pending] == [ids[3], ids[2], ids[0]]
        resolved = await tx.incidents.query(IncidentQuery(status=IncidentStatus.RESOLVED))
        assert [i.id for i in resolved] == [ids[1]]
        on_a = await tx.incidents.query(IncidentQuery(service="web-1", node="node-a"))
        assert [i.id for i in on_a] == [ids[3], ids[0]]
        assert [i.id for i in await tx.incidents.query(IncidentQuery(limit=2))] == [ids[3], ids[2]]


async def test_fifty_concurrent_reports_of_one_problem_make_one_incident_with_fifty_occurrences(
    uow: StorageFactory,
) -> None:
    incidents = incidents_on(uow)

    reported = await asyncio.gather(*(incidents.report(report()) for _ in range(50)))

    assert len({incident.id for incident in reported}) == 1
    [incident] = await incidents.query(IncidentQuery())
    assert incident.occurrences == 50
    detail = await incidents.get(incident.id)
    assert [entry.kind for entry in detail.timeline] == [TimelineKind.OPENED] + [TimelineKind.OCCURRENCE] * 49


class RacingRepository:
    """Makes the first lookups of two writers both find nothing before either adds: the race the
    in-process lock cannot stop when the writers are two services (two processes)."""

    def __init__(
        self, inner: IncidentRepository, barrier: asyncio.Barrier, raced: set[int], writer: int
    ) -> None:
        self._inner = inner
        self._barrier = barrier
        self._raced = raced
        self._writer = writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def find(self, dedup_key: str) -> Incident | None:
        found = await self._inner.find(dedup_key)
        if self._writer not in self._raced:
            self._raced.add(self._writer)
            await self._barrier.wait()
        return found


async def test_two_writers_racing_to_open_one_problem_make_one_incident(uow: StorageFactory) -> None:
    barrier = asyncio.Barrier(2)
    raced: set[int] = set()

    def racing(writer: int) -> StorageFactory:
        def make() -> Any:
            tx = uow()

            class Racing:
                async def __aenter__(self) -> Any:
                    entered = await tx.__aenter__()
                    entered.incidents = RacingRepository(entered.incidents, barrier, raced, writer)
                    return entered

                async def __aexit__(self, *exc: object) -> None:
                    await tx.__aexit__(*exc)  # type: ignore[arg-type]

            return Racing()

        return make

    first, second = incidents_on(racing(1)), incidents_on(racing(2))

    reported = await asyncio.gather(first.report(report()), second.report(report()))

    assert raced == {1, 2}  # both looked before either added: one of them met the unique index
    assert reported[0].id == reported[1].id
    [incident] = await first.query(IncidentQuery())
    assert incident.occurrences == 2
