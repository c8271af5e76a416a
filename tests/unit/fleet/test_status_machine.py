"""A Hypothesis stateful model of the agent status machine: any sequence of heartbeats, clock advances
and sweeps keeps the invariants (offline exactly when the TTL passed, no flicker inside the hysteresis
window, one event per transition)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.events.model import Event
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import AgentBecameCritical, AgentRecovered, AgentRegistered, AgentWentOffline
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus

POLICY = FleetPolicy(offline_after=timedelta(seconds=30), critical_threshold=90, hysteresis=3)
AGENT = "bee-001"


def status_after(event: Event) -> AgentStatus:
    if isinstance(event, AgentRegistered):
        return event.status
    if isinstance(event, AgentWentOffline):
        return AgentStatus.OFFLINE
    if isinstance(event, AgentBecameCritical):
        return AgentStatus.CRITICAL
    assert isinstance(event, AgentRecovered)
    return AgentStatus.ONLINE


class AgentStatusMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.bus = FakeEventBus()
        self.uow = FakeUnitOfWorkFactory()
        self.fleet = Fleet(self.uow, self.bus, self.clock, POLICY)
        self.beats: list[tuple[bool, bool]] = []  # (hot, reported critical), since the agent last came online
        self.checked_events = 0

    def teardown(self) -> None:
        self.loop.close()

    @rule(
        cpu=st.floats(0, 100),
        ram=st.floats(0, 100),
        reported=st.sampled_from(
            [AgentStatus.ONLINE, AgentStatus.ONLINE, AgentStatus.CRITICAL, AgentStatus.HEALING]
        ),
    )
    def heartbeat(self, cpu: float, ram: float, reported: AgentStatus) -> None:
        known = self.fleet.size > 0
        was_offline = known and self.fleet.get(AGENT).is_overdue(self.clock.now(), POLICY)
        if was_offline:
            self.beats = []
        self.loop.run_until_complete(
            self.fleet.record_heartbeat(RecordHeartbeat(AGENT, Readings(cpu, ram), reported))
        )
        hot = cpu >= 90 or ram >= 90
        self.beats.append((hot, reported is AgentStatus.CRITICAL))
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
        for event in self.bus.published[self.checked_events :]:
            if isinstance(event, AgentBecameCritical) and event.reason != "reported by the agent":
                recent = self.beats[-POLICY.hysteresis :]
                assert len(recent) == POLICY.hysteresis
                assert all(hot for hot, _ in recent), "critical without a full hysteresis window of pressure"
            if isinstance(event, AgentRecovered) and event.previous is AgentStatus.CRITICAL:
                recent = self.beats[-POLICY.hysteresis :]
                assert len(recent) == POLICY.hysteresis
                assert all(not hot and not critical for hot, critical in recent), (
                    "recovered inside the window"
                )
        self.checked_events = len(self.bus.published)

    @invariant()
    def one_event_per_transition(self) -> None:
        statuses = [status_after(event) for event in self.bus.published]
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

    @invariant()
    def memory_and_database_agree_on_status(self) -> None:
        if self.fleet.size:
            assert self.uow.store.agents[AGENT].status is self.fleet.get(AGENT).status


AgentStatusMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestAgentStatusMachine = AgentStatusMachine.TestCase
