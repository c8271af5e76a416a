"""The composition root wires features through ports only: any EventBus feeds the live feed."""

from __future__ import annotations

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_api.bootstrap import bootstrap
from worpen_api.settings import Settings
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import AgentRegistered
from worpen_core.fleet.readings import Readings


async def test_events_published_on_another_bus_reach_the_live_feed(
    uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock
) -> None:
    worpen = bootstrap(Settings(), uow=uow, bus=bus, clock=clock, runtimes=[])

    await worpen.fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10.0, 20.0)))

    assert [(type(event), event.subject) for _, event in worpen.feed.since(0)] == [
        (AgentRegistered, "bee-001")
    ]
