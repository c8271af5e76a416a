"""The rule engine on core's fakes and the real sandbox: what a rule does with journal events, how storm
protection paces it, and that a backtest replays exactly what the live engine did."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.model import Principal, Role
from worpen_core.audit.service import AuditTrail
from worpen_core.automation.channels import ChannelKind, DeliveryPolicy, DeliveryQuery
from worpen_core.automation.commands import Backtest, RuleDraft
from worpen_core.automation.engine import RuleEngine
from worpen_core.automation.events import RemediationGaveUp
from worpen_core.automation.model import AutomationRule, RunQuery, RunStatus, StormPolicy, Trigger
from worpen_core.automation.notifications import Notifications
from worpen_core.automation.plan import ActionType, SandboxLimits
from worpen_core.automation.service import Automation, ScriptInvalid
from worpen_core.containers.model import Container, ContainerState
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.events.journal import EventJournal
from worpen_core.events.model import EventRecord, JsonValue, RecordedEvent
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.model import IncidentPolicy, IncidentQuery, IncidentStatus
from worpen_core.incidents.service import Incidents
from worpen_infra.sandbox.mini_racer import MiniRacerSandbox

ADMIN = Principal("key-admin", "alice", Role.ADMIN)
OPERATOR = Principal("key-ops", "bob", Role.OPERATOR)
WEB = "f" * 64
EXAMPLE = """
if (event.exit_code === 137) {
  log.warn("OOM Detected on " + service);
  docker.restart(container_id);
  notify.slack("#ops-alerts", "Restarted " + service);
}
"""


class Runtime(FakeRuntime):
    """An engine whose restarts are recorded (and run `during_restart`, when a test sets it)."""

    def __init__(self) -> None:
        super().__init__("edge-1", [_container()])
        self.restarted: list[str] = []
        self.during_restart: Callable[[], None] = lambda: None

    async def restart(self, ref: str, grace_seconds: int | None) -> None:
        self._check()
        self.restarted.append(ref)
        self.during_restart()


class Sender:
    async def check(self, url: str) -> None:
        return None

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        return None


class Cron:
    def check(self, expression: str) -> str | None:
        return None

    def next_after(self, expression: str, after: datetime) -> datetime:
        return after + timedelta(minutes=1)


def _container() -> Container:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return Container(WEB, "web", "img:1", ContainerState.RUNNING, "Up", "edge-1", created)


@dataclass
class World:
    uow: FakeUnitOfWorkFactory
    clock: FakeClock
    bus: FakeEventBus
    journal: EventJournal
    automation: Automation
    engine: RuleEngine
    incidents: Incidents
    runtime: Runtime
    notifications: Notifications

    async def died(self, exit_code: int, *, requested: bool = False) -> RecordedEvent:
        payload: dict[str, JsonValue] = {
            "node": "edge-1",
            "container_id": WEB,
            "name": "web",
            "image": "img:1",
            "at": self.clock.now().isoformat(),
            "exit_code": exit_code,
            "requested": requested,
        }
        record = EventRecord(self.clock.now(), "ContainerDied", "edge-1/web", payload)
        async with self.uow() as tx:
            [event_id] = await tx.events.append([record])
            await tx.commit()
        event = RecordedEvent.numbered(event_id, record)
        seen = self.engine.events_seen
        self.journal.committed([event])
        while self.engine.events_seen == seen:
            await asyncio.sleep(0.001)
        await self.engine.idle()
        return event

    async def rule(self, script: str = EXAMPLE, storm: StormPolicy | None = None) -> AutomationRule:
        draft = RuleDraft("heal-web", Trigger.CONTAINER_DIED, "we*", script, storm=storm or StormPolicy())
        return await self.automation.create(ADMIN, draft)

    async def runs(self) -> list[RunStatus]:
        return [run.status for run in reversed(await self.automation.runs(RunQuery(limit=1000)))]


@pytest.fixture
async def world(uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus) -> AsyncIterator[World]:
    sandbox = MiniRacerSandbox()
    audit = AuditTrail(uow, clock, bus)
    runtime = Runtime()
    containers = Containers([runtime], audit, clock, bus, ContainerLimits())
    fleet = Fleet(uow, bus, clock, FleetPolicy())
    incidents = Incidents(uow, clock, bus, fleet, containers, audit, IncidentPolicy())
    notifications = Notifications(uow, Sender(), audit, bus, clock, DeliveryPolicy())
    await notifications.create(ADMIN, "#ops-alerts", ChannelKind.SLACK, "https://hooks.example.com/T/B/x")
    journal = EventJournal(uow, clock, keep=timedelta(days=1), buffer=1000, prune_batch=100)
    automation = Automation(uow, sandbox, Cron(), audit, clock, SandboxLimits(time_ms=1000))
    engine = RuleEngine(
        uow,
        automation,
        journal,
        sandbox,
        Cron(),
        fleet,
        containers,
        incidents,
        notifications,
        bus,
        clock,
        retry_seconds=0.01,
    )
    stopping = asyncio.Event()
    running = asyncio.create_task(engine.run(stopping))
    await asyncio.wait_for(engine.following.wait(), 10)
    yield World(uow, clock, bus, journal, automation, engine, incidents, runtime, notifications)
    stopping.set()
    await running
    await sandbox.close()


async def test_a_killed_container_is_restarted_its_incident_opened_and_the_team_told(world: World) -> None:
    rule = await world.rule()
    event = await world.died(137)

    [run] = await world.automation.runs(RunQuery(rule_id=rule.id))
    assert run.status is RunStatus.SUCCEEDED
    assert run.event_id == event.id
    assert [(a.type, a.target) for a in run.plan] == [
        (ActionType.DOCKER_RESTART, WEB),
        (ActionType.NOTIFY_SLACK, "#ops-alerts"),
    ]
    assert all(applied.ok for applied in run.applied)
    assert world.runtime.restarted == [WEB]
    assert [log.message for log in run.logs] == ["OOM Detected on web"]
    [incident] = await world.incidents.query(IncidentQuery())
    assert incident.id == run.incident_id
    assert (incident.service, incident.node, incident.status) == ("web", "edge-1", IncidentStatus.PENDING)
    assert "docker.restart" in incident.action
    [delivery] = await world.notifications.deliveries(DeliveryQuery(channel="#ops-alerts"))
    assert delivery.run_id == run.id
    assert delivery.body == {"rule": "heal-web", "payload": {"text": "Restarted web"}}
    assert (await world.automation.get(rule.id)).last_run_at == run.started_at


async def test_an_exit_the_script_does_not_care_about_and_a_requested_stop_do_nothing(world: World) -> None:
    await world.rule()
    await world.died(0)
    await world.died(143, requested=True)
    assert await world.runs() == [RunStatus.NO_ACTION]
    assert world.runtime.restarted == []
    assert await world.incidents.query(IncidentQuery()) == []


async def test_a_plan_naming_an_unknown_channel_fails_before_anything_is_applied(world: World) -> None:
    await world.rule('docker.restart(container_id); notify.slack("#nowhere", "x")')
    await world.died(1)
    [run] = await world.automation.runs(RunQuery())
    assert run.status is RunStatus.FAILED
    assert run.reason is not None
    assert "#nowhere" in run.reason
    assert world.runtime.restarted == []


async def test_a_container_that_keeps_dying_is_retried_with_growing_waits_then_given_up(world: World) -> None:
    storm = StormPolicy(cooldown_seconds=0, max_attempts=3, backoff_seconds=10)
    await world.rule("docker.restart(container_id)", storm)
    for _ in range(80):  # a death every second
        await world.died(1)
        await world.engine.fire_due()
        await world.engine.idle()
        world.clock.advance(1)
    runs = list(reversed(await world.automation.runs(RunQuery(limit=1000))))
    applied = [run for run in runs if run.status is RunStatus.SUCCEEDED]
    starts = [(run.started_at - applied[0].started_at).total_seconds() for run in applied]
    assert starts == [0, 10, 30]  # waits of 10 s then 20 s
    assert len(world.runtime.restarted) == 3
    gave_up = [run for run in runs if run.status is RunStatus.GAVE_UP]
    assert len(gave_up) == 1
    assert {run.status for run in runs[runs.index(gave_up[0]) + 1 :]} == {RunStatus.SUPPRESSED}
    [incident] = await world.incidents.query(IncidentQuery())
    assert incident.status is IncidentStatus.FAILED
    assert incident.occurrences == 80
    assert any(isinstance(event, RemediationGaveUp) for event in world.bus.published)


async def test_the_same_event_is_handled_once_even_when_dispatched_again(world: World) -> None:
    await world.rule()
    event = await world.died(137)
    world.journal.committed([event])
    await asyncio.sleep(0.01)
    await world.engine.idle()
    assert await world.runs() == [RunStatus.SUCCEEDED]


async def test_a_backtest_replays_what_the_live_rule_did_and_counts_what_storm_protection_held_back(
    world: World,
) -> None:
    storm = StormPolicy(cooldown_seconds=0, max_attempts=2, backoff_seconds=5)
    rule = await world.rule("if (event.exit_code !== 0) docker.restart(container_id)", storm)
    since = world.clock.now()
    for exit_code in (137, 1, 0, 137, 2, 137, 1, 137):  # an event every 2 s, the engine's tick every 1 s
        await world.died(exit_code)
        for _ in range(2):
            await world.engine.fire_due()
            await world.engine.idle()
            world.clock.advance(1)
    report = await world.engine.backtest(rule.id, Backtest(since, world.clock.now()), OPERATOR)

    live = {
        run.event_id: [(a.type, a.target) for a in run.plan]
        for run in await world.automation.runs(RunQuery(limit=100))
        if run.status is RunStatus.SUCCEEDED
    }
    replayed = {
        item.event_id: [(a.type, a.target) for a in item.outcome.actions]
        for item in report.items
        if item.verdict == "RUN"
    }
    assert replayed == live
    assert report.events_matched == 8
    assert report.runs == len(live) == 2
    assert report.actions == {"docker.restart": 2}
    assert report.targets == ("edge-1/web",)
    assert report.gave_up == 1
    assert report.suppressed >= 1


async def test_saving_a_rule_whose_script_does_not_compile_says_where(world: World) -> None:
    with pytest.raises(ScriptInvalid) as refused:
        await world.rule("if (event.exit_code === 137 {\n  docker.restart(container_id)\n}")
    assert refused.value.line == 1
    assert refused.value.column is not None


async def test_a_run_a_crash_left_running_is_recorded_interrupted(world: World) -> None:
    rule = await world.rule()
    await world.died(137)
    [run] = await world.automation.runs(RunQuery(rule_id=rule.id))
    async with world.uow() as tx:
        await tx.runs.update(run.finish(RunStatus.RUNNING, world.clock.now()))
        await tx.commit()
    assert await world.engine.recover() == 1
    [after] = await world.automation.runs(RunQuery(rule_id=rule.id))
    assert after.status is RunStatus.INTERRUPTED
    assert after.applied == run.applied


async def test_a_schedule_fires_once_per_slot_and_missed_slots_are_not_replayed_in_a_burst(
    world: World,
) -> None:
    draft = RuleDraft(
        "nightly-prune", Trigger.SCHEDULE, "web", 'log.info("tick " + event.time)', schedule="* * * * *"
    )
    rule = await world.automation.create(ADMIN, draft)
    world.clock.advance(30)
    assert await world.engine.fire_schedules() == 0
    world.clock.advance(31)  # the first slot: a minute after the rule was saved
    assert await world.engine.fire_schedules() == 1
    await world.engine.idle()
    assert await world.engine.fire_schedules() == 0
    world.clock.advance(600)  # ten slots pass while nothing looks
    assert await world.engine.fire_schedules() == 1
    await world.engine.idle()
    runs = await world.automation.runs(RunQuery(rule_id=rule.id))
    assert [(run.trigger, run.status) for run in runs] == [("SCHEDULE", RunStatus.NO_ACTION)] * 2
    assert all(run.logs[0].message.startswith("tick ") for run in runs)


async def test_a_plan_applied_while_the_database_goes_away_is_applied_once_and_recorded_when_it_is_back(
    world: World,
) -> None:
    await world.rule("docker.restart(container_id)")
    store = world.uow.store

    def database_goes_away() -> None:
        store.broken = True
        asyncio.get_running_loop().call_later(0.05, setattr, store, "broken", False)

    world.runtime.during_restart = database_goes_away
    await world.died(1)

    assert world.runtime.restarted == [WEB]
    assert await world.runs() == [RunStatus.SUCCEEDED]
