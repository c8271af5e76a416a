"""HEALING: while remediations run on a node its agent is HEALING, persisted and announced; when the last
one ends it returns to what its heartbeats say."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentHealing,
    AgentMetricHigh,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
)
from worpen_core.fleet.model import FleetPolicy, Healing
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import Unavailable

POLICY = FleetPolicy(offline_after=timedelta(seconds=30), critical_threshold=90, hysteresis=3)
AGENT = "bee-001"


@pytest.fixture
def fleet(uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock) -> Fleet:
    return Fleet(uow, bus, clock, POLICY)


def beat(cpu: float = 10, status: AgentStatus = AgentStatus.ONLINE, agent_id: str = AGENT) -> RecordHeartbeat:
    return RecordHeartbeat(agent_id, Readings(cpu, 20), status)


async def test_a_remediation_makes_the_agent_healing_then_returns_it_online(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat())

    await fleet.begin_healing(AGENT, "rule oom-restart: restarting web-1")

    assert fleet.get(AGENT).status is AgentStatus.HEALING
    assert uow.store.agents[AGENT].status is AgentStatus.HEALING
    healing = bus.published[-1]
    assert healing == AgentHealing(AGENT, clock.now(), "rule oom-restart: restarting web-1")

    clock.advance(5)
    await fleet.end_healing(AGENT)

    assert fleet.get(AGENT).status is AgentStatus.ONLINE
    assert uow.store.agents[AGENT].status is AgentStatus.ONLINE
    assert bus.published[-1] == AgentRecovered(AGENT, clock.now(), AgentStatus.HEALING)


async def test_heartbeats_during_healing_update_readings_not_the_status(
    fleet: Fleet, bus: FakeEventBus
) -> None:
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "restart")

    for cpu in (95, 95, 95, 95):
        ack = await fleet.record_heartbeat(beat(cpu))
        assert ack.status is AgentStatus.HEALING
    ack = await fleet.record_heartbeat(beat(status=AgentStatus.CRITICAL))

    assert ack.status is AgentStatus.HEALING
    assert fleet.get(AGENT).readings.cpu == 10
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentHealing, AgentMetricHigh]


async def test_nested_remediations_hold_healing_until_the_last_one_ends(
    fleet: Fleet, bus: FakeEventBus
) -> None:
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "restart web-1")
    await fleet.begin_healing(AGENT, "prune images")

    await fleet.end_healing(AGENT)
    assert fleet.get(AGENT).status is AgentStatus.HEALING

    await fleet.end_healing(AGENT)
    assert fleet.get(AGENT).status is AgentStatus.ONLINE
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentHealing, AgentRecovered]


async def test_the_end_returns_to_critical_when_heartbeats_say_so(fleet: Fleet, bus: FakeEventBus) -> None:
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "restart")
    for _ in range(3):
        await fleet.record_heartbeat(beat(95))

    await fleet.end_healing(AGENT)

    assert fleet.get(AGENT).status is AgentStatus.CRITICAL
    critical = bus.published[-1]
    assert isinstance(critical, AgentBecameCritical)
    assert critical.reason == "cpu or ram at or above 90% for 3 heartbeats"


async def test_a_critical_agent_healed_is_not_online_before_a_calm_window(fleet: Fleet) -> None:
    """The end does not skip the hysteresis: an agent CRITICAL when the remediation began needs as many
    calm heartbeats to come back ONLINE as it would have without one."""
    await fleet.record_heartbeat(beat(status=AgentStatus.CRITICAL))
    await fleet.begin_healing(AGENT, "restart")
    await fleet.record_heartbeat(beat())

    await fleet.end_healing(AGENT)
    assert fleet.get(AGENT).status is AgentStatus.CRITICAL

    await fleet.record_heartbeat(beat())
    assert fleet.get(AGENT).status is AgentStatus.CRITICAL
    await fleet.record_heartbeat(beat())
    assert fleet.get(AGENT).status is AgentStatus.ONLINE


async def test_the_sweeper_still_marks_a_silent_healing_agent_offline(
    fleet: Fleet, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "reboot")
    clock.advance(31)

    assert [type(event) for event in await fleet.sweep()] == [AgentWentOffline]
    assert fleet.get(AGENT).status is AgentStatus.OFFLINE

    await fleet.record_heartbeat(beat())
    assert fleet.get(AGENT).status is AgentStatus.HEALING, "back while the remediation still runs"
    assert bus.published[-1] == AgentHealing(AGENT, clock.now(), "reboot")

    await fleet.end_healing(AGENT)
    assert fleet.get(AGENT).status is AgentStatus.ONLINE


async def test_the_end_of_a_remediation_on_a_silent_agent_leaves_it_offline(
    fleet: Fleet, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "reboot")
    clock.advance(31)

    await fleet.end_healing(AGENT)

    assert fleet.get(AGENT).status is AgentStatus.OFFLINE
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentHealing, AgentWentOffline]


async def test_a_remediation_on_an_offline_agent_leaves_it_offline(
    fleet: Fleet, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat())
    clock.advance(31)
    await fleet.sweep()

    await fleet.begin_healing(AGENT, "restart")
    assert fleet.get(AGENT).status is AgentStatus.OFFLINE
    await fleet.end_healing(AGENT)

    assert fleet.get(AGENT).status is AgentStatus.OFFLINE
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentWentOffline]


async def test_a_node_that_is_not_an_agent_is_left_alone(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus
) -> None:
    await fleet.begin_healing("docker-only-node", "restart")
    await fleet.end_healing("docker-only-node")

    assert fleet.size == 0
    assert uow.store.agents == {}
    assert bus.published == []


async def test_a_begin_that_cannot_be_persisted_changes_nothing(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus
) -> None:
    await fleet.record_heartbeat(beat())
    uow.store.broken = True

    with pytest.raises(Unavailable):
        await fleet.begin_healing(AGENT, "restart")

    uow.store.broken = False
    assert fleet.get(AGENT).status is AgentStatus.ONLINE
    await fleet.end_healing(AGENT)
    assert [type(event) for event in bus.published] == [AgentRegistered]


async def test_the_remediations_running_and_the_status_underneath_are_stored_with_the_agent(
    fleet: Fleet, uow: FakeUnitOfWorkFactory
) -> None:
    """Every change reaches the store, though none makes an event: another replica reads it back."""
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "restart web-1")
    await fleet.begin_healing(AGENT, "prune images")
    assert uow.store.agents[AGENT].healing == Healing(("restart web-1", "prune images"), AgentStatus.ONLINE)

    await fleet.record_heartbeat(beat(status=AgentStatus.CRITICAL))
    assert uow.store.agents[AGENT].healing == Healing(("restart web-1", "prune images"), AgentStatus.CRITICAL)

    await fleet.end_healing(AGENT)
    assert uow.store.agents[AGENT].healing == Healing(("prune images",), AgentStatus.CRITICAL)
    assert uow.store.agents[AGENT].status is AgentStatus.HEALING

    await fleet.end_healing(AGENT)
    assert (uow.store.agents[AGENT].status, uow.store.agents[AGENT].healing) == (AgentStatus.CRITICAL, None)


async def test_an_agent_left_healing_by_a_restart_stays_healing_until_the_leftovers_are_ended(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    """The restarted server's heartbeats keep the stored remediations; its rule engine, starting, ends
    them (those that ran are gone), and the agent returns to what its heartbeats say, once."""
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "restart web-1")
    await fleet.begin_healing(AGENT, "prune images")
    restarted = Fleet(uow, bus, clock, POLICY)
    await restarted.restore()

    ack = await restarted.record_heartbeat(beat())
    assert ack.status is AgentStatus.HEALING

    assert await restarted.end_leftover_healing() == 1
    assert restarted.get(AGENT).status is AgentStatus.ONLINE
    assert (uow.store.agents[AGENT].status, uow.store.agents[AGENT].healing) == (AgentStatus.ONLINE, None)
    assert bus.published[-1] == AgentRecovered(AGENT, clock.now(), AgentStatus.HEALING)
    assert await restarted.end_leftover_healing() == 0
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentHealing, AgentRecovered]


async def test_leftovers_return_a_node_to_critical_or_offline_as_its_heartbeats_say(
    fleet: Fleet, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat(agent_id="bee-001"))
    await fleet.record_heartbeat(beat(agent_id="bee-002"))
    await fleet.record_heartbeat(beat(agent_id="bee-003"))
    for agent_id in ("bee-001", "bee-002"):
        await fleet.begin_healing(agent_id, "restart")
    await fleet.record_heartbeat(beat(agent_id="bee-001", status=AgentStatus.CRITICAL))
    clock.advance(20)
    await fleet.record_heartbeat(beat(agent_id="bee-001", status=AgentStatus.CRITICAL))
    await fleet.record_heartbeat(beat(agent_id="bee-003"))
    clock.advance(11)  # bee-002 fell silent

    assert await fleet.end_leftover_healing() == 2

    statuses = {agent.id: agent.status for agent in fleet.agents()}
    assert statuses == {
        "bee-001": AgentStatus.CRITICAL,
        "bee-002": AgentStatus.OFFLINE,
        "bee-003": AgentStatus.ONLINE,
    }
    assert isinstance(bus.published[-2], AgentBecameCritical)
    assert bus.published[-1] == AgentWentOffline("bee-002", clock.now(), clock.now() - timedelta(seconds=31))


async def test_an_agent_stored_healing_before_remediations_were_stored_returns_at_its_next_heartbeat(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    """A row a server wrote HEALING before the remediations were stored with it (migration 0013): nothing
    would end what ran then."""
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "restart")
    uow.store.agents[AGENT] = dataclasses.replace(uow.store.agents[AGENT], healing=None)
    restarted = Fleet(uow, bus, clock, POLICY)
    await restarted.restore()
    assert restarted.get(AGENT).status is AgentStatus.HEALING

    ack = await restarted.record_heartbeat(beat())

    assert ack.status is AgentStatus.ONLINE
    assert bus.published[-1] == AgentRecovered(AGENT, clock.now(), AgentStatus.HEALING)


async def test_ending_a_remediation_lost_in_a_restart_returns_the_agent(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat())
    await fleet.begin_healing(AGENT, "restart")
    restarted = Fleet(uow, bus, clock, POLICY)
    await restarted.restore()

    await restarted.end_healing(AGENT)

    assert restarted.get(AGENT).status is AgentStatus.ONLINE
    assert uow.store.agents[AGENT].status is AgentStatus.ONLINE
