"""Alerts from heartbeats: cpu, memory and disk high after a window at or above their threshold, cleared
after a window below threshold minus the margin, announced with the heartbeat's other transitions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import AgentMetricCleared, AgentMetricHigh, AgentRegistered, Metric
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import Unavailable

POLICY = FleetPolicy(
    offline_after=timedelta(seconds=30),
    critical_threshold=99,
    hysteresis=3,
    cpu_high=90,
    memory_high=80,
    disk_high=70,
    clear_margin=5,
)
AGENT = "bee-001"


@pytest.fixture
def fleet(uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock) -> Fleet:
    return Fleet(uow, bus, clock, POLICY)


def beat(cpu: float = 10, ram: float = 20, disk: float | None = 30) -> RecordHeartbeat:
    return RecordHeartbeat(AGENT, Readings(cpu, ram, disk))


async def test_each_metric_is_high_after_a_full_window_at_its_threshold(
    fleet: Fleet, bus: FakeEventBus, clock: FakeClock
) -> None:
    await fleet.record_heartbeat(beat())
    for _ in range(2):
        ack = await fleet.record_heartbeat(beat(cpu=90, ram=80, disk=70))
        assert not ack.changed
    assert fleet.get(AGENT).alerts == frozenset()

    ack = await fleet.record_heartbeat(beat(cpu=91, ram=85, disk=75))

    assert ack.changed
    assert fleet.get(AGENT).alerts == {Metric.CPU, Metric.MEMORY, Metric.DISK}
    assert bus.published[1:] == [
        AgentMetricHigh(AGENT, clock.now(), Metric.CPU, 91, 90),
        AgentMetricHigh(AGENT, clock.now(), Metric.MEMORY, 85, 80),
        AgentMetricHigh(AGENT, clock.now(), Metric.DISK, 75, 70),
    ]


async def test_a_reading_below_the_threshold_restarts_the_window(fleet: Fleet, bus: FakeEventBus) -> None:
    for cpu in (95, 95, 89.9, 95, 95):
        await fleet.record_heartbeat(beat(cpu=cpu))
    assert fleet.get(AGENT).alerts == frozenset()

    await fleet.record_heartbeat(beat(cpu=95))
    assert fleet.get(AGENT).alerts == {Metric.CPU}


async def test_a_high_metric_clears_only_below_the_margin_for_a_full_window(
    fleet: Fleet, bus: FakeEventBus, clock: FakeClock
) -> None:
    for _ in range(3):
        await fleet.record_heartbeat(beat(cpu=95))

    for cpu in (89, 86, 85.5, 84, 84, 85, 84, 84):  # hovering under the line does not clear it
        await fleet.record_heartbeat(beat(cpu=cpu))
    assert fleet.get(AGENT).alerts == {Metric.CPU}

    await fleet.record_heartbeat(beat(cpu=84.9))

    assert fleet.get(AGENT).alerts == frozenset()
    assert bus.published[-1] == AgentMetricCleared(AGENT, clock.now(), Metric.CPU, 84.9, 90)
    assert [type(event) for event in bus.published] == [AgentRegistered, AgentMetricHigh, AgentMetricCleared]


async def test_a_heartbeat_without_disk_breaks_the_disk_window_only(fleet: Fleet) -> None:
    await fleet.record_heartbeat(beat(cpu=95, disk=90))
    await fleet.record_heartbeat(beat(cpu=95, disk=None))
    await fleet.record_heartbeat(beat(cpu=95, disk=90))

    assert fleet.get(AGENT).alerts == {Metric.CPU}


async def test_with_a_window_of_one_the_first_heartbeat_raises_at_registration(
    uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    fleet = Fleet(uow, bus, clock, FleetPolicy(hysteresis=1, disk_high=70))

    await fleet.record_heartbeat(beat(disk=71))

    assert [type(event) for event in bus.published] == [AgentRegistered, AgentMetricHigh]
    assert fleet.get(AGENT).alerts == {Metric.DISK}


async def test_an_alert_that_cannot_be_persisted_is_not_acknowledged_nor_applied(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus
) -> None:
    await fleet.record_heartbeat(beat(cpu=95))
    await fleet.record_heartbeat(beat(cpu=95))
    uow.store.broken = True

    with pytest.raises(Unavailable):
        await fleet.record_heartbeat(beat(cpu=95))

    assert fleet.get(AGENT).alerts == frozenset()
    assert [type(event) for event in bus.published] == [AgentRegistered]


async def test_alerts_are_kept_across_a_restart_and_not_raised_again(
    fleet: Fleet, uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    for _ in range(3):
        await fleet.record_heartbeat(beat(ram=90))
    restarted = Fleet(uow, bus, clock, POLICY)
    await restarted.restore()
    assert restarted.get(AGENT).alerts == {Metric.MEMORY}

    for _ in range(3):
        await restarted.record_heartbeat(beat(ram=90))
    assert [type(event) for event in bus.published].count(AgentMetricHigh) == 1

    for _ in range(3):
        await restarted.record_heartbeat(beat(ram=10))
    assert restarted.get(AGENT).alerts == frozenset()
    assert isinstance(bus.published[-1], AgentMetricCleared)
