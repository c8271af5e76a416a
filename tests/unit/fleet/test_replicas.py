"""Two replicas of the fleet on one store: one agent's heartbeats land on either, the sweeper runs on one,
and neither loses nor doubles a transition."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from datetime import timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.unit.fleet.test_service import beat
from worpen_core.events.model import Event
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentEvent,
    AgentHealing,
    AgentMetricCleared,
    AgentMetricHigh,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
)
from worpen_core.fleet.model import FleetPolicy, Healing
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus

POLICY = FleetPolicy(
    offline_after=timedelta(seconds=30), critical_threshold=90, hysteresis=3, cpu_high=100, memory_high=100
)
"""Metric alerts out of the way: they live in each replica's memory (see Agent), these tests are about the
status."""


class Replica:
    def __init__(self, uow: FakeUnitOfWorkFactory, clock: FakeClock, policy: FleetPolicy = POLICY) -> None:
        self.bus = FakeEventBus()
        self.fleet = Fleet(uow, self.bus, clock, policy, shared=True)


@pytest.fixture
def a(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> Replica:
    return Replica(uow, clock)


@pytest.fixture
def b(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> Replica:
    return Replica(uow, clock)


def fleet_events(events: Iterable[Event]) -> list[AgentEvent]:
    return [event for event in events if isinstance(event, AgentEvent)]


def transitions(*replicas: Replica) -> list[type[Event]]:
    """The fleet's events published by these replicas, in the order of their time (then replica)."""
    published = fleet_events(event for replica in replicas for event in replica.bus.published)
    return [type(event) for event in sorted(published, key=lambda event: event.at)]


def by_agent(events: Iterable[Event]) -> list[tuple[type[Event], str]]:
    return [(type(event), event.agent_id) for event in fleet_events(events)]


async def test_an_agent_registered_on_both_replicas_at_once_is_registered_once(
    a: Replica, b: Replica
) -> None:
    first, second = await asyncio.gather(
        a.fleet.record_heartbeat(beat(name="edge")), b.fleet.record_heartbeat(beat(name="edge"))
    )

    assert transitions(a, b) == [AgentRegistered]
    assert [first.changed, second.changed].count(True) == 1
    assert a.fleet.get("bee-001").status is b.fleet.get("bee-001").status is AgentStatus.ONLINE


async def test_a_transition_another_replica_committed_first_is_applied_to_what_is_stored_not_made_again(
    a: Replica, b: Replica, uow: FakeUnitOfWorkFactory
) -> None:
    await a.fleet.record_heartbeat(beat())
    await b.fleet.restore()
    for _ in range(3):
        await a.fleet.record_heartbeat(beat(cpu=95))
    assert a.fleet.get("bee-001").status is AgentStatus.CRITICAL

    acks = [await b.fleet.record_heartbeat(beat(cpu=95)) for _ in range(3)]

    # B's third hot heartbeat found the row moved on: it read CRITICAL back and its beat changed nothing
    assert [ack.status for ack in acks] == [AgentStatus.ONLINE, AgentStatus.ONLINE, AgentStatus.CRITICAL]
    assert not any(ack.changed for ack in acks)
    assert transitions(a, b) == [AgentRegistered, AgentBecameCritical]
    assert b.fleet.get("bee-001").revision == uow.store.agents["bee-001"].revision == 2


async def test_heartbeats_alternating_between_replicas_make_each_transition_once(
    a: Replica, b: Replica, clock: FakeClock
) -> None:
    replicas = [a, b]
    readings = [10.0] * 2 + [95.0] * 8 + [10.0] * 8 + [95.0] * 8
    for number, cpu in enumerate(readings):
        clock.advance(1)
        await replicas[number % 2].fleet.record_heartbeat(beat(cpu=cpu))

    assert transitions(a, b) == [
        AgentRegistered,
        AgentBecameCritical,
        AgentRecovered,
        AgentBecameCritical,
    ]
    assert a.fleet.get("bee-001").status is b.fleet.get("bee-001").status is AgentStatus.CRITICAL


async def test_a_stale_agent_does_not_fail_the_others_committed_with_it(a: Replica, b: Replica) -> None:
    await a.fleet.record_heartbeat(beat("bee-001"))
    await a.fleet.record_heartbeat(beat("bee-002"))
    await b.fleet.restore()
    await b.fleet.record_heartbeat(beat("bee-001", status=AgentStatus.CRITICAL))

    stale, fine = await asyncio.gather(  # one batch: bee-001 is stale on A, bee-002 is not
        a.fleet.record_heartbeat(beat("bee-001", status=AgentStatus.CRITICAL)),
        a.fleet.record_heartbeat(beat("bee-002", status=AgentStatus.CRITICAL)),
    )

    assert (stale.status, stale.changed) == (AgentStatus.CRITICAL, False)
    assert (fine.status, fine.changed) == (AgentStatus.CRITICAL, True)
    assert by_agent(a.bus.published[2:]) == [(AgentBecameCritical, "bee-002")]
    assert by_agent(b.bus.published) == [(AgentBecameCritical, "bee-001")]


async def test_a_refresh_takes_in_what_the_other_replica_registered_and_changed(
    a: Replica, b: Replica, clock: FakeClock
) -> None:
    await b.fleet.restore()
    await a.fleet.record_heartbeat(beat("bee-001", name="edge"))
    await a.fleet.record_heartbeat(beat("bee-002"))
    clock.advance(1)

    assert await b.fleet.refresh() == 2
    assert [agent.id for agent in b.fleet.query()] == ["bee-001", "bee-002"]
    assert b.fleet.get("bee-001").name == "edge"

    await a.fleet.record_heartbeat(beat("bee-002", status=AgentStatus.CRITICAL))
    clock.advance(1)
    assert await b.fleet.refresh() == 1
    assert b.fleet.count_by_status() == a.fleet.count_by_status()
    assert b.fleet.get("bee-002").status is AgentStatus.CRITICAL
    assert await b.fleet.refresh() == 0  # what it holds already changes nothing
    assert b.bus.published == []


async def test_a_profile_written_by_one_replica_reaches_the_other(
    a: Replica, b: Replica, clock: FakeClock
) -> None:
    await a.fleet.record_heartbeat(beat(ip="10.0.0.7"))
    await b.fleet.restore()
    await a.fleet.record_heartbeat(beat(ip="10.0.0.8"))
    await a.fleet.flush()
    clock.advance(1)

    await b.fleet.refresh()

    assert b.fleet.get("bee-001").ip == "10.0.0.8"


async def test_the_sweeper_spares_an_agent_heartbeating_to_the_other_replica_and_expires_it_once(
    a: Replica, b: Replica, clock: FakeClock
) -> None:
    await a.fleet.record_heartbeat(beat("bee-001"))
    await a.fleet.record_heartbeat(beat("bee-002"))
    await b.fleet.restore()
    for _ in range(4):  # bee-001 now beats to B only, past A's TTL for it
        clock.advance(10)
        await b.fleet.record_heartbeat(beat("bee-001"))
        await b.fleet.flush()

    expired = await a.fleet.sweep()  # A leads

    assert by_agent(expired) == [(AgentWentOffline, "bee-002")]
    assert a.fleet.get("bee-001").status is AgentStatus.ONLINE

    clock.advance(31)  # bee-001's heartbeats stop too; B, which leads now, and A both sweep
    swept = [await b.fleet.sweep(), await a.fleet.sweep()]

    offline = [event.agent_id for event in [*swept[0], *swept[1]] if isinstance(event, AgentWentOffline)]
    assert offline == ["bee-001"]
    assert a.fleet.get("bee-001").status is AgentStatus.OFFLINE


async def test_a_heartbeat_back_on_a_replica_that_saw_none_for_a_while_is_no_comeback(
    a: Replica, b: Replica, clock: FakeClock
) -> None:
    await a.fleet.record_heartbeat(beat())
    await b.fleet.restore()
    for _ in range(4):  # past B's TTL for it, the heartbeats go to A
        clock.advance(10)
        await a.fleet.record_heartbeat(beat())
        await a.fleet.flush()

    ack = await b.fleet.record_heartbeat(beat())

    assert (ack.status, ack.changed) == (AgentStatus.ONLINE, False)
    assert transitions(a, b) == [AgentRegistered]


async def test_a_metric_alert_is_raised_and_cleared_once_whichever_replica_gets_the_heartbeats(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    alerting = dataclasses.replace(POLICY, cpu_high=90, critical_threshold=100)
    a, b = Replica(uow, clock, alerting), Replica(uow, clock, alerting)
    for number, cpu in enumerate([10.0] * 2 + [95.0] * 8 + [10.0] * 8):
        clock.advance(1)
        await (a, b)[number % 2].fleet.record_heartbeat(beat(cpu=cpu))

    assert transitions(a, b) == [AgentRegistered, AgentMetricHigh, AgentMetricCleared]
    assert a.fleet.get("bee-001").alerts == b.fleet.get("bee-001").alerts == frozenset()


async def test_a_refresh_takes_in_the_readings_of_heartbeats_the_other_replica_received(
    a: Replica, b: Replica, clock: FakeClock
) -> None:
    await a.fleet.record_heartbeat(beat(cpu=10))
    await a.fleet.flush()
    await b.fleet.restore()
    clock.advance(5)
    await a.fleet.record_heartbeat(beat(cpu=42, disk=70))
    await a.fleet.flush()

    await b.fleet.refresh()

    agent = b.fleet.get("bee-001")
    assert (agent.readings.cpu, agent.readings.disk, agent.last_seen) == (42, 70, clock.now())


async def test_heartbeats_to_the_other_replica_keep_an_agent_healing_until_the_remediation_ends(
    a: Replica, b: Replica, uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    """A remediation runs on A (which leads); the agent's heartbeats go to B, which holds it HEALING,
    moving only the status underneath; A's end, on a copy B's writes made stale, returns it once."""
    await a.fleet.record_heartbeat(beat())
    await b.fleet.restore()
    clock.advance(1)
    await a.fleet.begin_healing("bee-001", "rule oom: restart web-1")
    clock.advance(1)
    await b.fleet.refresh()

    acks = []
    for status in (AgentStatus.ONLINE, AgentStatus.CRITICAL, AgentStatus.CRITICAL):
        clock.advance(1)
        acks.append(await b.fleet.record_heartbeat(beat(status=status)))

    assert [ack.status for ack in acks] == [AgentStatus.HEALING] * 3
    assert uow.store.agents["bee-001"].healing == Healing(("rule oom: restart web-1",), AgentStatus.CRITICAL)
    await a.fleet.end_healing("bee-001")

    assert transitions(a, b) == [AgentRegistered, AgentHealing, AgentBecameCritical]
    assert uow.store.agents["bee-001"].status is AgentStatus.CRITICAL
    clock.advance(1)
    await b.fleet.refresh()
    assert b.fleet.get("bee-001").status is AgentStatus.CRITICAL


async def test_a_replica_that_has_not_seen_the_remediation_yet_keeps_it_when_its_save_finds_it(
    a: Replica, b: Replica, uow: FakeUnitOfWorkFactory
) -> None:
    """B's copy predates the remediation: its transition is stale, read again, and applied beneath it."""
    await a.fleet.record_heartbeat(beat())
    await b.fleet.restore()
    await a.fleet.begin_healing("bee-001", "restart")

    ack = await b.fleet.record_heartbeat(beat(status=AgentStatus.CRITICAL))

    assert ack.status is AgentStatus.HEALING
    assert uow.store.agents["bee-001"].healing == Healing(("restart",), AgentStatus.CRITICAL)
    assert transitions(a, b) == [AgentRegistered, AgentHealing]


async def test_either_replica_may_end_a_remediation_and_the_last_one_ended_returns_the_agent(
    a: Replica, b: Replica
) -> None:
    await a.fleet.record_heartbeat(beat())
    await a.fleet.begin_healing("bee-001", "restart web-1")
    await b.fleet.restore()
    await a.fleet.begin_healing("bee-001", "prune images")

    await b.fleet.end_healing("bee-001")  # its copy knows only the first: the stored pair is ended from
    assert a.fleet.get("bee-001").status is AgentStatus.HEALING
    await a.fleet.end_healing("bee-001")

    assert a.fleet.get("bee-001").status is AgentStatus.ONLINE
    assert transitions(a, b) == [AgentRegistered, AgentHealing, AgentRecovered]


async def test_a_new_leader_ends_the_remediations_a_dead_leader_left_behind(
    a: Replica, b: Replica, uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    """B restored before A began them, and has not refreshed since: it looks at the store first."""
    await a.fleet.record_heartbeat(beat("bee-001"))
    await a.fleet.record_heartbeat(beat("bee-002"))
    await b.fleet.restore()
    clock.advance(1)
    await a.fleet.begin_healing("bee-001", "restart web-1")
    await a.fleet.begin_healing("bee-001", "prune images")
    clock.advance(1)  # A dies here

    assert await b.fleet.end_leftover_healing() == 1

    assert b.fleet.get("bee-001").status is AgentStatus.ONLINE
    assert (uow.store.agents["bee-001"].status, uow.store.agents["bee-001"].healing) == (
        AgentStatus.ONLINE,
        None,
    )
    assert transitions(a, b) == [AgentRegistered, AgentRegistered, AgentHealing, AgentRecovered]
