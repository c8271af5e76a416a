"""Heartbeats an agent buffered while disconnected keep the time they were measured at."""

from __future__ import annotations

from datetime import timedelta

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet


async def test_a_late_heartbeat_is_stored_at_the_time_it_was_measured_and_a_future_one_at_now(
    uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    fleet = Fleet(uow, bus, clock, FleetPolicy())
    now = clock.now()
    earlier, later = now - timedelta(seconds=90), now + timedelta(seconds=90)

    await fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10, 20), measured_at=earlier))
    await fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(30, 20), measured_at=later))
    await fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(50, 20)))
    await fleet.flush()

    assert [(sample.readings.cpu, sample.at) for sample in uow.store.samples] == [
        (10, earlier),
        (30, now),
        (50, now),
    ]
