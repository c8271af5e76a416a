"""The composition root wires features through ports only: any EventBus feeds the journal and the log."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_api.bootstrap import bootstrap
from worpen_api.settings import PipelineSettings, Settings
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.readings import Readings
from worpen_core.logs.model import LogQuery


async def test_events_published_on_another_bus_reach_the_journal_and_the_log(
    uow: FakeUnitOfWorkFactory, bus: FakeEventBus, clock: FakeClock, tmp_path: Path
) -> None:
    settings = Settings(pipelines=PipelineSettings(secrets_key_file=str(tmp_path / "secrets.key")))
    worpen = bootstrap(settings, uow=uow, bus=bus, clock=clock, runtimes=[])

    await worpen.fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10.0, 20.0)))
    await worpen.logs.flush()

    assert [(event.type, event.subject) for event in await worpen.journal.read(0, 10)] == [
        ("AgentRegistered", "bee-001")
    ]
    [line] = await worpen.logs.query(LogQuery())
    assert (line.source, line.message) == ("bee-001", "bee-001 registered (ONLINE)")
