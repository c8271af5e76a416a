"""A Hypothesis stateful model of the agent status machine: any sequence of heartbeats, clock advances,
sweeps and remediations beginning and ending keeps the invariants (offline exactly when the TTL passed,
HEALING exactly while a remediation runs on a live agent, no flicker inside the hysteresis window, one
event per transition, alerts raised and cleared only after a full window on the right side of the line)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.events.model import Event
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentHealing,
    AgentMetricCleared,
    AgentMetricHigh,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    Metric,
)
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus

POLICY = FleetPolicy(
    offline_after=timedelta(seconds=30),
    critical_threshold=90,
    hysteresis=3,
    cpu_high=90,
    memory_high=80,
    disk_high=70,
    clear_margin=5,
)
AGENT = "bee-001"
THRESHOLDS = {Metric.CPU: POLICY.cpu_high, Metric.MEMORY: POLICY.memory_high, Metric.DISK: POLICY.disk_high}
percent = st.one_of(st.floats(0, 100), st.sampled_from([0.0, 64.9, 65, 69.9, 70, 75, 80, 84.9, 85, 90, 100]))


@dataclass(frozen=True)
class Beat:
    cpu: float
    ram: float
    disk: float | None
    reported: AgentStatus

    @property
    def hot(self) -> bool:
        return self.cpu >= 90 or self.ram >= 90

    @property
    def calm(self) -> bool:
        return not self.hot and self.reported is not AgentStatus.CRITICAL

    def reading(self, metric: Metric) -> float | None:
        return {Metric.CPU: self.cpu, Metric.MEMORY: self.ram, Metric.DISK: self.disk}[metric]


def at_or_above(value: float | None, line: float) -> bool:
    return value is not None and value >= line


def below(value: float | None, line: float) -> bool:
    return value is not None and value < line


def status_after(event: Event) -> AgentStatus | None:
    """The status an event leaves the agent in; None for an event that is not a transition."""
    match event:
        case AgentRegistered():
            return event.status
        case AgentWentOffline():
            return AgentStatus.OFFLINE
        case AgentBecameCritical():
            return AgentStatus.CRITICAL
        case AgentHealing():
            return AgentStatus.HEALING
        case AgentRecovered():
            return AgentStatus.ONLINE
    assert isinstance(event, AgentMetricHigh | AgentMetricCleared)
    return None


class AgentStatusMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.bus = FakeEventBus()
        self.uow = FakeUnitOfWorkFactory()
        self.fleet = Fleet(self.uow, self.bus, self.clock, POLICY)
        self.beats: list[Beat] = []  # since the agent last came online
        self.remediations = 0
        self.checked_events = 0

    def teardown(self) -> None:
        self.loop.close()

    @rule(
        cpu=percent,
        ram=percent,
        disk=st.none() | percent,
        reported=st.sampled_from(
            [AgentStatus.ONLINE, AgentStatus.ONLINE, AgentStatus.CRITICAL, AgentStatus.HEALING]
        ),
    )
    def heartbeat(self, cpu: float, ram: float, disk: float | None, reported: AgentStatus) -> None:
        known = self.fleet.size > 0
        was_offline = known and self.fleet.get(AGENT).is_overdue(self.clock.now(), POLICY)
        if was_offline:
            self.beats = []
        self.loop.run_until_complete(
            self.fleet.record_heartbeat(RecordHeartbeat(AGENT, Readings(cpu, ram, disk), reported))
        )
        self.beats.append(Beat(cpu, ram, disk, reported))
        self._check_new_events()

    @rule(reason=st.sampled_from(["rule oom-restart", "rule disk-prune"]))
    def begin_healing(self, reason: str) -> None:
        self.loop.run_until_complete(self.fleet.begin_healing(AGENT, reason))
        self.remediations += self.fleet.size > 0  # a node that is not an agent is left alone
        self._check_new_events()

    @rule()
    def end_healing(self) -> None:
        if self.remediations == 0:
            return
        self.loop.run_until_complete(self.fleet.end_healing(AGENT))
        self.remediations -= 1
        self._check_new_events()

    @rule(seconds=st.sampled_from([0.5, 1, 5, 10, 29, 30, 30.001, 31, 120]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        before = None if self.fleet.size == 0 else self.fleet.get(AGENT).status
        events = self.loop.run_until_complete(self.fleet.sweep())
        if events:
            assert before is not AgentStatus.OFFLINE
        self._check_new_events()

    def _check_new_events(self) -> None:
        recent = self.beats[-POLICY.hysteresis :]
        full = len(recent) == POLICY.hysteresis
        for event in self.bus.published[self.checked_events :]:
            if isinstance(event, AgentBecameCritical) and event.reason.startswith("cpu or ram"):
                assert full, "critical without a full hysteresis window of pressure"
                assert all(beat.hot for beat in recent), (
                    "critical without a full hysteresis window of pressure"
                )
            if isinstance(event, AgentBecameCritical) and event.reason == "not calm for long enough yet":
                assert not (full and all(beat.calm for beat in recent)), "held critical after a calm window"
            if isinstance(event, AgentRecovered) and event.previous is AgentStatus.CRITICAL:
                assert full, "recovered inside the window"
                assert all(beat.calm for beat in recent), "recovered inside the window"
            if isinstance(event, AgentRecovered) and event.previous is AgentStatus.HEALING:
                assert not (full and all(beat.hot for beat in recent)), "back ONLINE under pressure"
                assert not recent or recent[-1].reported is not AgentStatus.CRITICAL
            if isinstance(event, AgentMetricHigh):
                threshold = THRESHOLDS[event.metric]
                assert (event.value, event.threshold) == (recent[-1].reading(event.metric), threshold)
                assert full, "raised without a full window"
                assert all(at_or_above(beat.reading(event.metric), threshold) for beat in recent)
            if isinstance(event, AgentMetricCleared):
                line = THRESHOLDS[event.metric] - POLICY.clear_margin
                assert full, "cleared without a full window"
                assert all(below(beat.reading(event.metric), line) for beat in recent), "cleared too soon"
        self.checked_events = len(self.bus.published)

    @invariant()
    def one_event_per_transition(self) -> None:
        statuses = [status for event in self.bus.published if (status := status_after(event))]
        assert all(a is not b for a, b in itertools.pairwise(statuses)), statuses
        if self.fleet.size:
            assert statuses[-1] is self.fleet.get(AGENT).status
            assert isinstance(self.bus.published[0], AgentRegistered)

    @invariant()
    def offline_exactly_when_the_ttl_passed(self) -> None:
        if self.fleet.size == 0:
            return
        overdue = self.clock.now() - self.fleet.get(AGENT).last_seen > POLICY.offline_after
        self.sweep()  # the server's background task sweeps on its own
        assert (self.fleet.get(AGENT).status is AgentStatus.OFFLINE) == overdue
        assert (self.fleet.get(AGENT).status is AgentStatus.HEALING) == (
            self.remediations > 0 and not overdue
        )

    @invariant()
    def alerts_follow_the_readings_and_their_events(self) -> None:
        if self.fleet.size == 0:
            return
        alerts = self.fleet.get(AGENT).alerts
        raised = {
            event.metric: isinstance(event, AgentMetricHigh)
            for event in self.bus.published
            if isinstance(event, AgentMetricHigh | AgentMetricCleared)
        }
        assert alerts == {metric for metric, high in raised.items() if high}
        recent = self.beats[-POLICY.hysteresis :]
        if len(recent) < POLICY.hysteresis:
            return
        for metric, threshold in THRESHOLDS.items():
            readings = [beat.reading(metric) for beat in recent]
            if all(at_or_above(value, threshold) for value in readings):
                assert metric in alerts, f"{metric} high for a full window but not raised"
            if all(below(value, threshold - POLICY.clear_margin) for value in readings):
                assert metric not in alerts, f"{metric} low for a full window but not cleared"

    @invariant()
    def memory_and_database_agree_on_status(self) -> None:
        if self.fleet.size:
            assert self.uow.store.agents[AGENT].status is self.fleet.get(AGENT).status


AgentStatusMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestAgentStatusMachine = AgentStatusMachine.TestCase
