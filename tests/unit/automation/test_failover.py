"""The rule engine across a change of leader: the engines of two replicas share one store; whichever leads
resumes from the stored cursor, a rule never fires twice for one event or one cron slot, and every replica
takes in the rules changed through another."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.fakes.automation import FakeRuleRepository
from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.unit.automation.test_engine import ADMIN, EXAMPLE, WEB, Cron, Runtime, Sender
from worpen_core.audit.service import AuditTrail
from worpen_core.automation.channels import ChannelKind, DeliveryPolicy
from worpen_core.automation.commands import RuleDraft
from worpen_core.automation.engine import RuleEngine
from worpen_core.automation.events import RuleRan
from worpen_core.automation.model import AutomationRule, RunQuery, RunStatus, StormPolicy, Trigger
from worpen_core.automation.notifications import Notifications
from worpen_core.automation.plan import SandboxLimits
from worpen_core.automation.service import Automation
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.events.journal import EventJournal
from worpen_core.events.model import EventRecord, JsonValue, RecordedEvent
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.model import IncidentPolicy, IncidentQuery
from worpen_core.incidents.service import Incidents
from worpen_infra.sandbox.mini_racer import MiniRacerSandbox


@dataclass
class Replica:
    journal: EventJournal
    automation: Automation
    engine: RuleEngine
    runtime: Runtime
    sandbox: MiniRacerSandbox
    bus: FakeEventBus
    incidents: Incidents
    stopping: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None

    async def lead(self) -> None:
        """Start this replica's engine, as becoming the leader does."""
        await self.automation.restore()
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(self.engine.run(self.stopping))
        await asyncio.wait_for(self.engine.following.wait(), 10)

    async def step_down(self) -> None:
        assert self.stopping is not None
        assert self.task is not None
        self.stopping.set()
        await self.task


def replica(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> Replica:
    bus = FakeEventBus()
    sandbox = MiniRacerSandbox()
    audit = AuditTrail(uow, clock, bus)
    runtime = Runtime()
    containers = Containers([runtime], audit, clock, bus, ContainerLimits())
    fleet = Fleet(uow, bus, clock, FleetPolicy())
    incidents = Incidents(uow, clock, bus, fleet, containers, audit, IncidentPolicy())
    notifications = Notifications(uow, Sender(), audit, bus, clock, DeliveryPolicy())
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
    return Replica(journal, automation, engine, runtime, sandbox, bus, incidents)


async def died(uow: FakeUnitOfWorkFactory, clock: FakeClock, replicas: list[Replica]) -> RecordedEvent:
    """A container died: the event is committed, and every replica's journal hears of it."""
    payload: dict[str, JsonValue] = {
        "node": "edge-1",
        "container_id": WEB,
        "name": "web",
        "image": "img:1",
        "at": clock.now().isoformat(),
        "exit_code": 137,
        "requested": False,
    }
    record = EventRecord(clock.now(), "ContainerDied", "edge-1/web", payload)
    async with uow() as tx:
        [event_id] = await tx.events.append([record])
        await tx.commit()
    event = RecordedEvent.numbered(event_id, record)
    for each in replicas:
        each.journal.committed([event])
    return event


async def settle(replicas: list[Replica]) -> None:
    await asyncio.sleep(0.05)
    for each in replicas:
        await each.engine.idle()


async def test_a_rule_fires_once_for_each_event_whichever_replica_leads(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a, b = replica(uow, clock), replica(uow, clock)
    both = [a, b]
    bus = FakeEventBus()
    setup = Notifications(uow, Sender(), AuditTrail(uow, clock, bus), bus, clock, DeliveryPolicy())
    await setup.create(ADMIN, "#ops-alerts", ChannelKind.SLACK, "https://hooks.example.com/T/B/x")
    unpaced = StormPolicy(cooldown_seconds=0, backoff_seconds=0, max_backoff_seconds=0)
    draft = RuleDraft("heal-web", Trigger.CONTAINER_DIED, "we*", EXAMPLE, storm=unpaced)
    await a.automation.create(ADMIN, draft)

    await a.lead()
    first = await died(uow, clock, both)
    await settle(both)
    await a.step_down()  # deposed before it stored its cursor past the event

    await b.lead()
    second = await died(uow, clock, both)
    await settle(both)
    await b.engine.save_cursor()
    await b.step_down()

    await a.lead()  # a leads again: it resumes from the store, not from where it stopped itself
    third = await died(uow, clock, both)
    await settle(both)
    await a.step_down()

    runs = await a.automation.runs(RunQuery(limit=100))
    assert Counter(run.event_id for run in runs) == {first.id: 1, second.id: 1, third.id: 1}
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
    assert (a.runtime.restarted, b.runtime.restarted) == ([WEB, WEB], [WEB])
    for each in both:
        await each.sandbox.close()


async def test_a_cron_slot_fires_once_when_two_engines_see_it_due(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a, b = replica(uow, clock), replica(uow, clock)
    draft = RuleDraft("nightly", Trigger.SCHEDULE, "web", 'log.info("tick")', schedule="* * * * *")
    await a.automation.create(ADMIN, draft)
    await b.automation.restore()
    clock.advance(61)

    fired = await asyncio.gather(a.engine.fire_schedules(), b.engine.fire_schedules())
    await settle([a, b])

    assert sorted(fired) == [0, 1]
    assert len(await a.automation.runs(RunQuery(limit=100))) == 1
    for each in (a, b):
        await each.engine.close()
        await each.sandbox.close()


async def test_a_stopped_engine_queues_nothing_more(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
    a = replica(uow, clock)
    draft = RuleDraft("nightly", Trigger.SCHEDULE, "web", 'log.info("tick")', schedule="* * * * *")
    await a.automation.create(ADMIN, draft)
    await a.lead()
    await a.step_down()
    clock.advance(61)

    assert await a.engine.fire_schedules() == 0  # a step that ends after the engine stopped

    assert a.engine.queued() == 0
    assert await a.automation.runs(RunQuery(limit=100)) == []
    await a.sandbox.close()


async def test_every_replica_takes_in_the_rules_changed_through_another(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a, b = replica(uow, clock), replica(uow, clock)
    draft = RuleDraft("nightly", Trigger.SCHEDULE, "web", 'log.info("tick")', schedule="* * * * *")

    rule = await b.automation.create(ADMIN, draft)
    await a.automation.refresh()
    assert [each.id for each in a.automation.active()] == [rule.id]

    await a.automation.delete(ADMIN, rule.id)
    await b.automation.refresh()
    assert b.automation.active() == []
    for each in (a, b):
        await each.sandbox.close()


async def test_a_refresh_overlapping_a_change_made_here_keeps_the_change(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = replica(uow, clock)
    reading, go_on = asyncio.Event(), asyncio.Event()
    list_all = FakeRuleRepository.list_all

    async def slow_list_all(self: FakeRuleRepository) -> list[AutomationRule]:
        rules = await list_all(self)
        reading.set()
        await go_on.wait()
        return rules

    monkeypatch.setattr(FakeRuleRepository, "list_all", slow_list_all)
    refreshing = asyncio.create_task(a.automation.refresh())  # reads the store before the rule exists
    await reading.wait()
    monkeypatch.setattr(FakeRuleRepository, "list_all", list_all)
    draft = RuleDraft("nightly", Trigger.SCHEDULE, "web", 'log.info("tick")', schedule="* * * * *")
    rule = await a.automation.create(ADMIN, draft)
    go_on.set()
    await refreshing

    assert [each.id for each in a.automation.active()] == [rule.id]
    await a.sandbox.close()


async def two_leaders(uow: FakeUnitOfWorkFactory, clock: FakeClock, storm: StormPolicy) -> list[Replica]:
    """Both replicas' engines running at once, as at a handover while the old leader still finishes a
    step: each takes every event."""
    a, b = replica(uow, clock), replica(uow, clock)
    bus = FakeEventBus()
    setup = Notifications(uow, Sender(), AuditTrail(uow, clock, bus), bus, clock, DeliveryPolicy())
    await setup.create(ADMIN, "#ops-alerts", ChannelKind.SLACK, "https://hooks.example.com/T/B/x")
    await a.automation.create(
        ADMIN, RuleDraft("heal-web", Trigger.CONTAINER_DIED, "we*", EXAMPLE, storm=storm)
    )
    await a.lead()
    await b.lead()
    return [a, b]


async def test_two_engines_taking_one_event_apply_its_plan_once_and_the_refused_one_leaves_no_trace(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    both = await two_leaders(uow, clock, StormPolicy())
    event = await died(uow, clock, both)
    await settle(both)

    runs = await both[0].automation.runs(RunQuery(limit=100))
    assert [(run.event_id, run.status) for run in runs] == [(event.id, RunStatus.SUCCEEDED)]
    assert sum(len(each.runtime.restarted) for each in both) == 1
    assert sorted(each.engine.claims_refused for each in both) == [0, 1]
    refused = next(each for each in both if each.engine.claims_refused)
    assert not any(isinstance(published, RuleRan) for published in refused.bus.published)
    [incident] = await refused.incidents.query(IncidentQuery())
    assert incident.occurrences == 1
    for each in both:
        await each.step_down()
        await each.sandbox.close()


async def test_a_deferred_plan_fired_by_two_engines_runs_once(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    both = await two_leaders(uow, clock, StormPolicy(cooldown_seconds=30, backoff_seconds=0))
    first = await died(uow, clock, both)
    await settle(both)
    clock.advance(5)
    second = await died(uow, clock, both)  # within the cooldown: deferred
    await settle(both)
    clock.advance(30)

    fired = await asyncio.gather(*(each.engine.fire_due() for each in both))
    await settle(both)

    assert fired == [1, 1]
    runs = list(reversed(await both[0].automation.runs(RunQuery(limit=100))))
    assert [(run.event_id, run.status) for run in runs] == [
        (first.id, RunStatus.SUCCEEDED),
        (second.id, RunStatus.DEFERRED),
        (second.id, RunStatus.SUCCEEDED),
    ]
    assert sum(len(each.runtime.restarted) for each in both) == 2
    for each in both:
        await each.step_down()
        await each.sandbox.close()


async def test_a_deferred_plan_that_fails_is_not_tried_again_every_tick(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    [a, b] = await two_leaders(uow, clock, StormPolicy(cooldown_seconds=30, backoff_seconds=0))
    await b.step_down()
    await died(uow, clock, [a])
    await settle([a])
    clock.advance(5)
    second = await died(uow, clock, [a])
    await settle([a])
    bus = FakeEventBus()
    setup = Notifications(uow, Sender(), AuditTrail(uow, clock, bus), bus, clock, DeliveryPolicy())
    [channel] = await setup.list_all()
    await setup.delete(ADMIN, channel.id)  # the deferred plan names a channel that is gone by then
    clock.advance(30)

    assert await a.engine.fire_due() == 1
    await settle([a])
    clock.advance(1)
    assert await a.engine.fire_due() == 0

    [deferred_run, *_] = await a.automation.runs(RunQuery(limit=100))
    assert (deferred_run.event_id, deferred_run.status) == (second.id, RunStatus.FAILED)
    await a.step_down()
    for each in (a, b):
        await each.sandbox.close()
