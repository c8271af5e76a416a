"""The fleet use cases, on fakes: registration, transitions, persistence before acknowledgement, batching."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentMetricCleared,
    AgentMetricHigh,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
)
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import READING_NAMES, Readings
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import InvalidInput, NotFound, Unavailable

POLICY = FleetPolicy(offline_after=timedelta(seconds=30), critical_threshold=90, hysteresis=3)


@pytest.fixture
def fleet(uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock) -> Fleet:
    return Fleet(uow, bus, clock, POLICY)


def beat(agent_id: str = "bee-001", cpu: float = 10, ram: float = 20, **extra: object) -> RecordHeartbeat:
    """A heartbeat: `extra` holds readings (disk, uptime_seconds...) and the command's other fields."""
    readings = {name: value for name, value in extra.items() if name in READING_NAMES}
    rest = {name: value for name, value in extra.items() if name not in READING_NAMES}
    return RecordHeartbeat(agent_id, Readings(cpu, ram, **readings), **rest)  # type: ignore[arg-type]


async def test_first_heartbeat_registers_and_is_persisted_before_the_ack(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus
) -> None:
    ack = await fleet.record_heartbeat(beat(name="edge one", ip="10.0.0.7"))

    assert ack.status is AgentStatus.ONLINE
    assert ack.next_heartbeat_seconds == POLICY.heartbeat_interval
    stored = uow.store.agents["bee-001"]
    assert (stored.name, stored.ip, stored.status) == ("edge one", "10.0.0.7", AgentStatus.ONLINE)
    assert [type(event) for event in bus.published] == [AgentRegistered]


async def test_a_heartbeat_that_changes_nothing_costs_no_transaction(
    fleet: Fleet, uow: FakeUnitOfWorkFactory
) -> None:
    await fleet.record_heartbeat(beat())
    made = len(uow.made)

    for _ in range(50):
        await fleet.record_heartbeat(beat(cpu=30))

    assert len(uow.made) == made
    assert fleet.get("bee-001").readings.cpu == 30


async def test_flush_writes_samples_in_one_batch_and_a_restart_reads_the_newest_back(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    for cpu in (10, 20, 30):
        clock.advance(1)
        await fleet.record_heartbeat(beat(cpu=cpu, disk=55.5, uptime_seconds=int(cpu)))
    made = len(uow.made)

    assert await fleet.flush() == 3

    assert len(uow.made) == made + 1
    assert [sample.readings.cpu for sample in uow.store.samples] == [10, 20, 30]
    assert await fleet.flush() == 0
    restarted = Fleet(uow, bus, clock, POLICY)
    await restarted.restore()
    agent = restarted.get("bee-001")
    assert (agent.readings, agent.last_seen) == (Readings(30, 20, disk=55.5, uptime_seconds=30), clock.now())


async def test_what_an_agent_says_of_itself_is_stored_at_the_next_flush(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat(ip="10.0.0.7", version="1.0"))
    await fleet.record_heartbeat(beat(ip="10.0.0.8", version="1.1", peers=("bee-002",), name="edge"))
    await fleet.flush()

    restarted = Fleet(uow, bus, clock, POLICY)
    await restarted.restore()
    agent = restarted.get("bee-001")
    assert (agent.ip, agent.version, agent.peers, agent.name) == ("10.0.0.8", "1.1", ("bee-002",), "edge")


async def test_a_failed_flush_keeps_everything_for_the_next_one(
    fleet: Fleet, uow: FakeUnitOfWorkFactory
) -> None:
    await fleet.record_heartbeat(beat(cpu=1))
    await fleet.record_heartbeat(beat(cpu=2))
    uow.store.broken = True

    with pytest.raises(Unavailable):
        await fleet.flush()
    assert fleet.buffered_samples == 2

    uow.store.broken = False
    assert await fleet.flush() == 2
    assert [sample.readings.cpu for sample in uow.store.samples] == [1, 2]


async def test_a_transition_that_cannot_be_persisted_is_not_acknowledged_nor_applied(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus
) -> None:
    await fleet.record_heartbeat(beat())
    uow.store.broken = True

    with pytest.raises(Unavailable):
        await fleet.record_heartbeat(beat(status=AgentStatus.CRITICAL))

    assert fleet.get("bee-001").status is AgentStatus.ONLINE
    assert [type(event) for event in bus.published] == [AgentRegistered]


async def test_critical_needs_hysteresis_heartbeats_both_ways(fleet: Fleet, bus: FakeEventBus) -> None:
    await fleet.record_heartbeat(beat())
    statuses = []
    for cpu in (95, 95, 95, 10, 10, 95, 10, 10, 10):
        statuses.append((await fleet.record_heartbeat(beat(cpu=cpu))).status)

    c, o = AgentStatus.CRITICAL, AgentStatus.ONLINE
    assert statuses == [o, o, c, c, c, c, c, c, o]
    assert [type(event) for event in bus.published] == [
        AgentRegistered,
        AgentBecameCritical,
        AgentMetricHigh,
        AgentRecovered,
        AgentMetricCleared,
    ]


async def test_an_agent_reporting_critical_is_critical_at_once(fleet: Fleet, bus: FakeEventBus) -> None:
    await fleet.record_heartbeat(beat())
    ack = await fleet.record_heartbeat(beat(status=AgentStatus.CRITICAL))

    assert ack.status is AgentStatus.CRITICAL
    critical = bus.published[-1]
    assert isinstance(critical, AgentBecameCritical)
    assert critical.reason == "reported by the agent"


async def test_the_ack_says_whether_the_heartbeat_changed_anything(fleet: Fleet) -> None:
    registered = await fleet.record_heartbeat(beat())
    routine = await fleet.record_heartbeat(beat(cpu=30))
    transition = await fleet.record_heartbeat(beat(status=AgentStatus.CRITICAL))

    assert (registered.changed, routine.changed, transition.changed) == (True, False, True)


async def test_sweep_marks_overdue_agents_offline_and_persists_it(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    await fleet.record_heartbeat(beat("a"))
    clock.advance(20)
    await fleet.record_heartbeat(beat("b"))
    clock.advance(11)

    events = await fleet.sweep()

    assert [(type(event), event.agent_id) for event in events] == [(AgentWentOffline, "a")]
    assert uow.store.agents["a"].status is AgentStatus.OFFLINE
    assert fleet.get("b").status is AgentStatus.ONLINE
    assert await fleet.sweep() == []
    assert bus.published[-1] == events[0]


async def test_heartbeat_after_the_ttl_records_offline_then_recovery(
    fleet: Fleet, clock: FakeClock, bus: FakeEventBus
) -> None:
    await fleet.record_heartbeat(beat())
    clock.advance(31)

    ack = await fleet.record_heartbeat(beat())

    assert ack.status is AgentStatus.ONLINE
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentWentOffline, AgentRecovered]


async def test_sweep_of_an_unknown_agent_is_not_found(fleet: Fleet) -> None:
    with pytest.raises(NotFound):
        await fleet.sweep(["ghost"])


async def test_restore_brings_back_the_persisted_fleet(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat("a", status=AgentStatus.CRITICAL))
    await fleet.record_heartbeat(beat("b"))

    restarted = Fleet(uow, bus, clock, POLICY)
    assert await restarted.restore() == 2
    assert [(agent.id, agent.status) for agent in restarted.query()] == [
        ("a", AgentStatus.CRITICAL),
        ("b", AgentStatus.ONLINE),
    ]


async def test_query_filters_by_status_and_pages_by_id(fleet: Fleet) -> None:
    for agent_id in ("c", "a", "b"):
        await fleet.record_heartbeat(beat(agent_id))
    await fleet.record_heartbeat(beat("d", status=AgentStatus.CRITICAL))

    assert [agent.id for agent in fleet.query()] == ["a", "b", "c", "d"]
    assert [agent.id for agent in fleet.query(after="b")] == ["c", "d"]
    assert [agent.id for agent in fleet.query(AgentStatus.CRITICAL)] == ["d"]
    assert fleet.count_by_status()[AgentStatus.ONLINE] == 3


def test_heartbeat_interval_stretches_with_the_fleet_but_stays_inside_the_ttl() -> None:
    policy = FleetPolicy(
        offline_after=timedelta(seconds=60), heartbeat_interval=10, max_heartbeats_per_second=50
    )

    assert policy.next_heartbeat_seconds(10) == 10
    assert policy.next_heartbeat_seconds(1000) == 20
    assert policy.next_heartbeat_seconds(1_000_000) == 30


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cpu": 250}, "cpu"),
        ({"cpu": -1}, "cpu"),
        ({"ram": float("nan")}, "ram"),
        ({"agent_id": "x" * 129}, "id"),
        ({"agent_id": "has space"}, "id"),
        ({"ip": "300.1.1.1"}, "ip"),
        ({"ip": "1" * 65}, "ip"),
        ({"peers": ("ok", "not ok")}, "peers"),
        ({"net_rx_bytes": -5}, "netRxBytes"),
    ],
)
def test_heartbeats_are_validated_in_the_core_too(fields: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"agent_id": "bee-001", "cpu": 1.0, "ram": 1.0, **fields}
    with pytest.raises(InvalidInput) as caught:
        beat(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_history_is_newest_first_across_the_buffer_and_the_database(
    fleet: Fleet, clock: FakeClock
) -> None:
    for cpu in (1, 2, 3):
        clock.advance(1)
        await fleet.record_heartbeat(beat(cpu=cpu))
    await fleet.flush()
    for cpu in (4, 5):
        clock.advance(1)
        await fleet.record_heartbeat(beat(cpu=cpu))

    assert [sample.readings.cpu for sample in await fleet.history("bee-001", 4)] == [5, 4, 3, 2]
    assert [sample.readings.cpu for sample in await fleet.history("bee-001", 1)] == [5]
    with pytest.raises(NotFound):
        await fleet.history("ghost", 10)


async def test_concurrent_registrations_share_one_transaction(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus
) -> None:
    acks = await asyncio.gather(*(fleet.record_heartbeat(beat(f"bee-{n:03}")) for n in range(50)))

    assert {ack.status for ack in acks} == {AgentStatus.ONLINE}
    assert len(uow.store.agents) == 50
    assert len(uow.made) == 1
    assert len(bus.published) == 50


async def test_while_telemetry_cannot_be_written_the_oldest_samples_are_dropped_never_transitions(
    uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    fleet = Fleet(uow, bus, clock, dataclasses.replace(POLICY, max_buffered_samples=3))
    await fleet.record_heartbeat(beat(cpu=1))
    uow.store.broken = True
    for cpu in range(2, 8):
        clock.advance(1)
        await fleet.record_heartbeat(beat(cpu=cpu))
    with pytest.raises(Unavailable):
        await fleet.flush()
    with pytest.raises(Unavailable):
        await fleet.record_heartbeat(beat("bee-002"))

    assert fleet.buffered_samples == 3
    assert fleet.samples_dropped == 4
    uow.store.broken = False
    assert await fleet.flush() == 3
    assert [sample.readings.cpu for sample in uow.store.samples] == [5, 6, 7]
    await fleet.record_heartbeat(beat("bee-002"))
    assert sorted(uow.store.agents) == ["bee-001", "bee-002"]
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentRegistered]
