"""The incident use cases on fakes: deduplication while open, reopening within the window, remediation
steps, escalation, resolution (twice is a conflict) and auto-resolution when the condition cleared."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.model import Principal, Role
from worpen_core.audit.model import AuditQuery, Outcome
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.model import Container, ContainerDetail, ContainerState, Health
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.events import (
    IncidentEscalated,
    IncidentOpened,
    IncidentRecurred,
    IncidentReopened,
    IncidentResolved,
    IncidentUpdated,
)
from worpen_core.incidents.model import (
    IncidentPolicy,
    IncidentQuery,
    IncidentReport,
    IncidentStatus,
    ResolutionMethod,
    Severity,
    TimelineKind,
)
from worpen_core.incidents.service import Incidents
from worpen_core.logs.model import Level
from worpen_core.logs.render import render
from worpen_core.shared.errors import Conflict, Forbidden, InvalidInput, NotFound

POLICY = IncidentPolicy(reopen_window=timedelta(minutes=10), grace=timedelta(seconds=30))
OPERATOR = Principal("key-1", "ops", Role.OPERATOR)
VIEWER = Principal("key-2", "watcher", Role.VIEWER)


class Engine(FakeRuntime):
    """A fake engine whose containers were started when the test says (`started`, by name)."""

    def __init__(self, node: str, held: list[Container]) -> None:
        super().__init__(node, held)
        self.started_at: dict[str, datetime] = {}

    async def inspect(self, ref: str) -> ContainerDetail:
        detail = await super().inspect(ref)
        return dataclasses.replace(detail, started_at=self.started_at.get(detail.container.name))


def web(state: ContainerState = ContainerState.RUNNING, health: Health = Health.NONE) -> Container:
    return Container(
        "c0ffee" + "0" * 58,
        "web-1",
        "img:1",
        state,
        "",
        "node-a",
        datetime(2026, 1, 1, tzinfo=UTC),
        health=health,
    )


@pytest.fixture
def engine() -> Engine:
    return Engine("node-a", [web()])


@pytest.fixture
def fleet(uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock) -> Fleet:
    return Fleet(uow, bus, clock, FleetPolicy(offline_after=timedelta(seconds=30)))


@pytest.fixture
def incidents(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus, fleet: Fleet, engine: Engine
) -> Incidents:
    audit = AuditTrail(uow, clock, bus)
    containers = Containers([engine], audit, clock, bus, ContainerLimits())
    return Incidents(uow, clock, bus, fleet, containers, audit, POLICY)


def died(service: str = "web-1", node: str = "node-a", message: str = "exit 137") -> IncidentReport:
    return IncidentReport(
        service, node, "container died", Severity.HIGH, "", trigger="CONTAINER_DIED", message=message
    )


async def test_a_problem_seen_again_while_open_is_counted_on_the_open_incident(
    incidents: Incidents, clock: FakeClock, bus: FakeEventBus
) -> None:
    first = await incidents.report(died(message="exit 137"))
    clock.advance(5)
    again = await incidents.report(died(message="exit 1"))
    other_node = await incidents.report(died(node="node-b"))

    assert again.id == first.id != other_node.id
    incident = await incidents.get(first.id)
    assert (incident.status, incident.occurrences, incident.last_seen_at) == (
        IncidentStatus.PENDING,
        2,
        clock.now(),
    )
    assert incident.opened_at == clock.now() - timedelta(seconds=5) == incident.time
    assert [(e.kind, e.message) for e in incident.timeline] == [
        (TimelineKind.OPENED, "exit 137"),
        (TimelineKind.OCCURRENCE, "exit 1"),
    ]
    assert [type(e) for e in bus.published] == [IncidentOpened, IncidentRecurred, IncidentOpened]
    assert [i.id for i in await incidents.query(IncidentQuery(node="node-a"))] == [first.id]


async def test_fifty_concurrent_reports_of_one_problem_make_one_incident_with_fifty_occurrences(
    incidents: Incidents, bus: FakeEventBus
) -> None:
    reported = await asyncio.gather(*(incidents.report(died()) for _ in range(50)))

    assert len({incident.id for incident in reported}) == 1
    [incident] = await incidents.query(IncidentQuery())
    assert incident.occurrences == 50
    assert len((await incidents.get(incident.id)).timeline) == 50
    assert sum(isinstance(event, IncidentOpened) for event in bus.published) == 1


async def test_a_resolved_incident_that_recurs_within_the_window_reopens_with_its_history(
    incidents: Incidents, clock: FakeClock, bus: FakeEventBus
) -> None:
    first = await incidents.report(died())
    await incidents.resolve(first.id, by="ops", method=ResolutionMethod.MANUAL, notes="restarted it")
    clock.advance(9 * 60)

    reopened = await incidents.report(died())

    assert reopened.id == first.id
    incident = await incidents.get(first.id)
    assert (incident.status, incident.occurrences, incident.resolved_at, incident.method) == (
        IncidentStatus.PENDING,
        2,
        None,
        None,
    )
    assert [e.kind for e in incident.timeline] == [
        TimelineKind.OPENED,
        TimelineKind.RESOLVED,
        TimelineKind.REOPENED,
    ]
    assert isinstance(bus.published[-1], IncidentReopened)


async def test_a_problem_that_recurs_after_the_window_opens_a_new_incident(
    incidents: Incidents, clock: FakeClock
) -> None:
    first = await incidents.report(died())
    await incidents.resolve(first.id, by="ops", method=ResolutionMethod.MANUAL)
    clock.advance(10 * 60 + 1)

    second = await incidents.report(died())

    assert second.id != first.id
    assert (await incidents.get(first.id)).status is IncidentStatus.RESOLVED
    assert [i.id for i in await incidents.query(IncidentQuery())] == [second.id, first.id]


async def test_resolving_a_resolved_incident_is_a_conflict_and_an_unknown_one_not_found(
    incidents: Incidents, bus: FakeEventBus
) -> None:
    incident = await incidents.report(died())

    resolved = await incidents.resolve(incident.id, by="ops", method=ResolutionMethod.MANUAL, notes="done")

    assert (resolved.status, resolved.resolved_by, resolved.method, resolved.notes) == (
        IncidentStatus.RESOLVED,
        "ops",
        ResolutionMethod.MANUAL,
        "done",
    )
    assert isinstance(bus.published[-1], IncidentResolved)
    with pytest.raises(Conflict, match="already resolved"):
        await incidents.resolve(incident.id, by="ops", method=ResolutionMethod.MANUAL)
    with pytest.raises(NotFound):
        await incidents.resolve("nope", by="ops", method=ResolutionMethod.MANUAL)
    with pytest.raises(NotFound):
        await incidents.get("nope")


async def test_steps_are_remediation_entries_and_may_change_the_action_summary(
    incidents: Incidents, bus: FakeEventBus
) -> None:
    incident = await incidents.report(died())

    stepped = await incidents.step(incident.id, "restarting web-1", action="docker.restart web-1")
    await incidents.step(incident.id, "web-1 restarted")

    assert stepped.action == "docker.restart web-1"
    detail = await incidents.get(incident.id)
    assert detail.action == "docker.restart web-1"
    assert [(e.kind, e.message) for e in detail.timeline[1:]] == [
        (TimelineKind.REMEDIATION, "restarting web-1"),
        (TimelineKind.REMEDIATION, "web-1 restarted"),
    ]
    assert isinstance(bus.published[-1], IncidentUpdated)


async def test_a_failed_incident_is_escalated_loudly_stays_open_and_can_be_resolved_by_hand(
    incidents: Incidents, bus: FakeEventBus
) -> None:
    incident = await incidents.report(died())

    failed = await incidents.fail(incident.id, "gave up after 5 restarts in 10 minutes")

    assert failed.status is IncidentStatus.FAILED
    escalation = bus.published[-1]
    assert isinstance(escalation, IncidentEscalated)
    line = render(escalation)
    assert line.level is Level.ERROR
    assert "gave up after 5 restarts" in line.message
    assert "web-1" in line.message
    assert (await incidents.report(died())).id == incident.id  # still open: counted on it
    assert (await incidents.get(incident.id)).status is IncidentStatus.FAILED
    resolved = await incidents.resolve(incident.id, by="ops", method=ResolutionMethod.MANUAL)
    assert resolved.status is IncidentStatus.RESOLVED
    with pytest.raises(Conflict):
        await incidents.fail(incident.id, "too late")


async def test_resolving_by_hand_needs_an_operator_and_is_audited(
    incidents: Incidents, uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    incident = await incidents.report(died())

    with pytest.raises(Forbidden):
        await incidents.resolve_as(VIEWER, incident.id, "looks fine")
    resolved = await incidents.resolve_as(OPERATOR, incident.id, "looks fine")

    assert (resolved.resolved_by, resolved.method, resolved.notes) == (
        "ops",
        ResolutionMethod.MANUAL,
        "looks fine",
    )
    audit = AuditTrail(uow, FakeClock(), FakeEventBus())
    [entry] = await audit.query(AuditQuery(action="incident.resolve"))
    assert (entry.actor, entry.target, entry.node, entry.outcome) == (
        "ops",
        incident.id,
        "node-a",
        Outcome.SUCCEEDED,
    )
    clock.advance(1)
    with pytest.raises(Conflict):
        await incidents.resolve_as(OPERATOR, incident.id, "again")
    entries = await audit.query(AuditQuery(action="incident.resolve"))
    assert [e.outcome for e in entries] == [Outcome.FAILED, Outcome.SUCCEEDED]


async def test_a_report_needs_an_issue_and_names_without_the_key_separator() -> None:
    with pytest.raises(InvalidInput):
        IncidentReport("web-1", "node-a", "  ")
    with pytest.raises(InvalidInput):
        IncidentReport("web|1", "node-a", "died")
    with pytest.raises(InvalidInput):
        IncidentReport("web-1", "node-a", "x" * 501)


async def test_a_container_incident_resolves_itself_once_the_container_ran_for_the_grace_period(
    incidents: Incidents, engine: Engine, clock: FakeClock, bus: FakeEventBus
) -> None:
    incident = await incidents.report(died())
    engine.held = [web(ContainerState.EXITED)]
    assert await incidents.auto_resolve() == 0

    engine.held = [web()]
    engine.started_at["web-1"] = clock.now()
    clock.advance(29)
    assert await incidents.auto_resolve() == 0
    engine.held = [web(health=Health.UNHEALTHY)]
    clock.advance(1)
    assert await incidents.auto_resolve() == 0

    engine.held = [web(health=Health.HEALTHY)]
    assert await incidents.auto_resolve() == 1

    resolved = await incidents.get(incident.id)
    assert (resolved.status, resolved.method, resolved.resolved_by) == (
        IncidentStatus.RESOLVED,
        ResolutionMethod.AUTO,
        "worpen",
    )
    assert "running for 30 s" in (resolved.notes or "")
    assert resolved.timeline[-1].kind is TimelineKind.RESOLVED
    assert render(bus.published[-1]).level is Level.SUCCESS
    assert await incidents.auto_resolve() == 0


async def test_an_engine_that_cannot_be_reached_leaves_the_incident_pending(
    incidents: Incidents, engine: Engine, clock: FakeClock
) -> None:
    incident = await incidents.report(died())
    incident_elsewhere = await incidents.report(died(node="no-such-node"))
    engine.started_at["web-1"] = clock.now()
    clock.advance(60)
    engine.down = True

    assert await incidents.auto_resolve() == 0

    engine.down = False
    assert await incidents.auto_resolve() == 1
    assert (await incidents.get(incident.id)).status is IncidentStatus.RESOLVED
    assert (await incidents.get(incident_elsewhere.id)).status is IncidentStatus.PENDING


async def test_an_agent_incident_resolves_itself_when_the_agent_is_online_again(
    incidents: Incidents, fleet: Fleet, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10.0, 20.0)))
    clock.advance(31)
    await fleet.sweep()
    offline = await incidents.report(
        IncidentReport("bee-001", "bee-001", "agent offline", Severity.CRITICAL, trigger="AGENT_OFFLINE")
    )
    unknown = await incidents.report(
        IncidentReport("bee-404", "bee-404", "agent offline", Severity.CRITICAL, trigger="AGENT_OFFLINE")
    )
    assert await incidents.auto_resolve() == 0

    await fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10.0, 20.0)))

    assert await incidents.auto_resolve() == 1
    resolved = await incidents.get(offline.id)
    assert (resolved.status, resolved.method) == (IncidentStatus.RESOLVED, ResolutionMethod.AUTO)
    assert (await incidents.get(unknown.id)).status is IncidentStatus.PENDING


async def test_incidents_without_a_condition_and_failed_ones_are_left_to_scripts_and_people(
    incidents: Incidents, engine: Engine, clock: FakeClock
) -> None:
    scripted = await incidents.report(IncidentReport("web-1", "node-a", "slow checkout", Severity.MEDIUM))
    failed = await incidents.report(died())
    await incidents.fail(failed.id, "gave up")
    engine.started_at["web-1"] = clock.now()
    clock.advance(3600)

    assert await incidents.auto_resolve() == 0
    assert (await incidents.get(scripted.id)).status is IncidentStatus.PENDING
    assert (await incidents.get(failed.id)).status is IncidentStatus.FAILED


async def test_a_metric_incident_resolves_itself_once_the_agent_no_longer_reports_the_metric_high(
    incidents: Incidents, fleet: Fleet
) -> None:
    for _ in range(3):
        await fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(95.0, 20.0)))
    assert "cpu" in fleet.get("bee-001").alerts
    cpu = await incidents.report(
        IncidentReport("bee-001", "bee-001", "cpu high", Severity.HIGH, trigger="CPU_HIGH")
    )
    memory = await incidents.report(
        IncidentReport("bee-001", "bee-001", "memory high", Severity.HIGH, trigger="MEMORY_HIGH")
    )

    assert await incidents.auto_resolve() == 1  # memory was never high
    assert (await incidents.get(memory.id)).method is ResolutionMethod.AUTO
    assert (await incidents.get(cpu.id)).status is IncidentStatus.PENDING

    for _ in range(3):
        await fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(40.0, 20.0)))

    assert await incidents.auto_resolve() == 1
    resolved = await incidents.get(cpu.id)
    assert (resolved.status, resolved.method) == (IncidentStatus.RESOLVED, ResolutionMethod.AUTO)
    assert "cpu of bee-001 is back under its threshold" in (resolved.notes or "")
