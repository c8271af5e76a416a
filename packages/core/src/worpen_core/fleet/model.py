"""The fleet's aggregate: one agent (a node), the status machine its heartbeats drive, the alerts its
readings raise, and the HEALING status remediations put it in."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter

from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentEvent,
    AgentHealing,
    AgentMetricCleared,
    AgentMetricHigh,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    Metric,
)
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.status import AgentStatus


@dataclass(frozen=True, slots=True)
class FleetPolicy:
    """Thresholds of the status machine and of heartbeat pacing."""

    offline_after: timedelta = timedelta(seconds=30)
    critical_threshold: float = 90.0
    hysteresis: int = 3
    heartbeat_interval: int = 10
    max_heartbeats_per_second: float = 50.0
    max_buffered_samples: int = 100_000
    """Telemetry samples held while they cannot be written (about 150 bytes each); beyond it the oldest
    are dropped. Registrations and transitions are never buffered: they are written before the ack."""
    cpu_high: float = 90.0
    memory_high: float = 90.0
    disk_high: float = 90.0
    """A metric is high after `hysteresis` heartbeats in a row at or above its threshold (percent)."""
    clear_margin: float = 5.0
    """A high metric clears after `hysteresis` heartbeats in a row below its threshold minus this margin,
    so that a reading hovering around the line does not raise and clear it again and again."""

    def next_heartbeat_seconds(self, fleet_size: int) -> int:
        """Like Nomad: stretch the interval as the fleet grows so the server sees at most
        `max_heartbeats_per_second`, but never so far that a healthy agent would miss its TTL."""
        spread = math.ceil(fleet_size / self.max_heartbeats_per_second)
        ceiling = max(1, int(self.offline_after.total_seconds() // 2))
        return min(max(self.heartbeat_interval, spread), ceiling)


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    agent_id: str
    at: datetime
    readings: Readings


NO_STREAKS = (0, 0, 0)
"""The streaks of an agent whose readings are all on the side of the line they were: one shared tuple, so
that a heartbeat that changes nothing allocates nothing and the check for it is an identity test."""


@dataclass(frozen=True, slots=True)
class Healing:
    """The remediations running on an agent's node, and the status its heartbeats give it meanwhile: where
    it returns when the last one ends."""

    reasons: tuple[str, ...]
    """Why each began, oldest first."""
    underneath: AgentStatus


@dataclass(slots=True)
class Agent:
    """A node as its heartbeats describe it. `alerts` (the metrics currently high) and `healing` (the
    remediations running on the node) are stored with its status, so that replicas sharing the database
    raise and clear each alert once, and every replica keeps the agent HEALING until the last remediation
    ends, whichever replica its heartbeats reach. The streaks live in memory only: after a restart, or on
    another replica, heartbeats count them afresh."""

    id: str
    name: str
    status: AgentStatus
    reported_status: AgentStatus
    readings: Readings
    last_seen: datetime
    registered_at: datetime
    ip: str | None = None
    os: str | None = None
    version: str | None = None
    peers: tuple[str, ...] = ()
    pressure_streak: int = 0
    calm_streak: int = 0
    alerts: frozenset[Metric] = frozenset()
    streaks: tuple[int, int, int] = NO_STREAKS
    """Per metric (cpu, memory, disk), heartbeats in a row that count towards flipping it: at or above its
    threshold while it is not high, below threshold minus margin while it is."""
    healing: Healing | None = None
    revision: int = field(default=0, compare=False)
    """The revision of the stored row this state was read from or last written as (0: never stored). A
    save succeeds only if the row is still at that revision: replicas sharing a database never overwrite
    each other's transitions (optimistic concurrency). Not compared: it says where the state is from, not
    what it is."""
    changed_at: datetime | None = field(default=None, compare=False)
    """When the stored state last changed (a registration, a transition, a profile): replicas take in what
    changed since they last looked."""

    @classmethod
    def register(
        cls, beat: RecordHeartbeat, at: datetime, policy: FleetPolicy
    ) -> tuple[Agent, list[AgentEvent]]:
        """The agent its first heartbeat describes, and the events: its registration, and its metrics that
        are high already (with a hysteresis of 1)."""
        agent = cls(
            id=beat.agent_id,
            name=beat.name or beat.agent_id,
            status=AgentStatus.ONLINE,
            reported_status=beat.status,
            readings=beat.readings,
            last_seen=at,
            registered_at=at,
        )
        agent._absorb(beat, at, policy)
        agent.status = agent._status_after_beat(beat.status, AgentStatus.ONLINE, policy)[0]
        events: list[AgentEvent] = [AgentRegistered(agent.id, at, agent.status)]
        agent._watch(beat.readings, at, policy, events)
        return agent, events

    def copy(self) -> Agent:
        return Agent(*_agent_fields(self))  # a tenth of dataclasses.replace's cost, on every heartbeat

    def adopt(self, stored: Agent) -> Agent:
        """This agent as `stored` (read back from the database, perhaps written by another replica) says it
        is now: its status, alerts, remediations and profile if the row is newer than what this copy was
        read from, its readings if they are newer; the streaks, which live in memory only, stay this
        copy's."""
        merged = stored.copy() if stored.revision > self.revision else self.copy()
        if stored.last_seen > self.last_seen:
            merged.last_seen, merged.readings = stored.last_seen, stored.readings
        else:
            merged.last_seen, merged.readings = self.last_seen, self.readings
        merged.pressure_streak, merged.calm_streak = self.pressure_streak, self.calm_streak
        merged.streaks = self.streaks
        return merged

    def profile(self) -> tuple[object, ...]:
        """What the agent says of itself besides its readings. Readings are stored as telemetry samples;
        the agent itself is stored when it registers, when its status changes, and when this changes."""
        return _agent_profile(self)

    def catch_up(self, newest: TelemetrySample | None) -> None:
        """Take the readings of the agent's newest stored sample, if it is newer than what the agent holds
        (an agent is read back from its last stored state and its newest sample)."""
        if newest is None or newest.at <= self.last_seen:
            return
        self.last_seen = newest.at
        self.readings = newest.readings

    def sample(self) -> TelemetrySample:
        return TelemetrySample(self.id, self.last_seen, self.readings)

    def is_overdue(self, now: datetime, policy: FleetPolicy) -> bool:
        return now - self.last_seen > policy.offline_after

    def expire(self, now: datetime, policy: FleetPolicy) -> list[AgentEvent]:
        """Mark the agent OFFLINE if its last heartbeat is older than the TTL."""
        if self.status is AgentStatus.OFFLINE or not self.is_overdue(now, policy):
            return []
        self.status = AgentStatus.OFFLINE
        self.pressure_streak = self.calm_streak = 0
        self.streaks = NO_STREAKS
        if self.healing is not None:
            self.healing = Healing(self.healing.reasons, AgentStatus.OFFLINE)
        return [AgentWentOffline(self.id, now, self.last_seen)]

    def beat(self, beat: RecordHeartbeat, at: datetime, policy: FleetPolicy) -> list[AgentEvent]:
        """Take in a heartbeat; return the events of the transitions it caused (none, most of the time)."""
        events = self.expire(at, policy)
        previous = self.status
        self._absorb(beat, at, policy)
        healing = self.healing
        if healing is not None:
            self._beat_while_healing(healing, beat.status, at, previous, policy, events)
        else:
            target, reason = self._status_after_beat(beat.status, previous, policy)
            if target is not previous:
                self.status = target
                events.append(self._arrived(target, previous, reason, at))
        readings = beat.readings
        if (  # plain comparisons first: most heartbeats raise nothing and have nothing pending
            self.streaks is not NO_STREAKS
            or self.alerts
            or readings.cpu >= policy.cpu_high
            or readings.ram >= policy.memory_high
            or (readings.disk is not None and readings.disk >= policy.disk_high)
        ):
            self._watch(readings, at, policy, events)
        return events

    def begin_healing(self, reason: str, at: datetime, policy: FleetPolicy) -> list[AgentEvent]:
        """A remediation began on the agent's node: it is HEALING until the last one running ends. One
        whose heartbeats stopped stays OFFLINE, and becomes HEALING if they resume meanwhile."""
        events = self.expire(at, policy)
        if self.healing is not None:
            self.healing = Healing((*self.healing.reasons, reason), self.healing.underneath)
            return events
        underneath = self.status
        if underneath is AgentStatus.HEALING:  # stored so before remediations were stored
            underneath = self._status_after_beat(self.reported_status, underneath, policy)[0]
        self.healing = Healing((reason,), underneath)
        if self.status is AgentStatus.OFFLINE or self.status is AgentStatus.HEALING:
            return events
        self.status = AgentStatus.HEALING
        events.append(AgentHealing(self.id, at, reason))
        return events

    def end_healing(self, at: datetime, policy: FleetPolicy) -> list[AgentEvent]:
        """A remediation ended (the oldest running). When none is left, the agent returns to what its
        heartbeats say: ONLINE or CRITICAL, or OFFLINE if they stopped. An agent HEALING with no
        remediation known (stored so before remediations were stored) returns too."""
        healing = self.healing
        if healing is not None and len(healing.reasons) > 1:
            self.healing = Healing(healing.reasons[1:], healing.underneath)
            return []
        return self.end_all_healing(at, policy)

    def end_all_healing(self, at: datetime, policy: FleetPolicy) -> list[AgentEvent]:
        """Every remediation on the node ended at once (those a stopped rule engine left behind): the agent
        returns to what its heartbeats say, as after the last one."""
        healing = self.healing
        self.healing = None
        events = self.expire(at, policy)
        if self.status is not AgentStatus.HEALING:
            return events
        underneath = AgentStatus.HEALING if healing is None else healing.underneath
        target, reason = self._status_after_beat(self.reported_status, underneath, policy)
        self.status = target
        events.append(self._arrived(target, AgentStatus.HEALING, reason, at))
        return events

    def _beat_while_healing(
        self,
        healing: Healing,
        reported: AgentStatus,
        at: datetime,
        previous: AgentStatus,
        policy: FleetPolicy,
        events: list[AgentEvent],
    ) -> None:
        """Heartbeats move the status underneath, not the status; one that ends an OFFLINE spell makes the
        agent HEALING again, the remediation still running."""
        underneath = self._status_after_beat(reported, healing.underneath, policy)[0]
        if underneath is not healing.underneath:
            self.healing = Healing(healing.reasons, underneath)
        if previous is AgentStatus.OFFLINE:
            self.status = AgentStatus.HEALING
            events.append(AgentHealing(self.id, at, healing.reasons[-1]))

    def _arrived(self, target: AgentStatus, previous: AgentStatus, reason: str, at: datetime) -> AgentEvent:
        if target is AgentStatus.CRITICAL:
            return AgentBecameCritical(self.id, at, reason, self.readings.cpu, self.readings.ram)
        return AgentRecovered(self.id, at, previous)

    def _watch(self, readings: Readings, at: datetime, policy: FleetPolicy, events: list[AgentEvent]) -> None:
        old = self.streaks
        cpu = self._track(Metric.CPU, readings.cpu, policy.cpu_high, old[0], at, policy, events)
        memory = self._track(Metric.MEMORY, readings.ram, policy.memory_high, old[1], at, policy, events)
        disk = self._track(Metric.DISK, readings.disk, policy.disk_high, old[2], at, policy, events)
        if cpu != old[0] or memory != old[1] or disk != old[2]:
            self.streaks = (cpu, memory, disk) if cpu or memory or disk else NO_STREAKS

    def _track(
        self,
        metric: Metric,
        value: float | None,
        threshold: float,
        streak: int,
        at: datetime,
        policy: FleetPolicy,
        events: list[AgentEvent],
    ) -> int:
        """The metric's streak after this reading; raises or clears it when the streak is long enough. A
        heartbeat without the reading (disk is optional) breaks the streak and changes nothing else."""
        if value is None:
            return 0
        high = metric in self.alerts
        counts = value < threshold - policy.clear_margin if high else value >= threshold
        if not counts:
            return 0
        streak += 1
        if streak < policy.hysteresis:
            return streak
        if high:
            self.alerts = self.alerts - {metric}
            events.append(AgentMetricCleared(self.id, at, metric, value, threshold))
        else:
            self.alerts = self.alerts | {metric}
            events.append(AgentMetricHigh(self.id, at, metric, value, threshold))
        return 0

    def _absorb(self, beat: RecordHeartbeat, at: datetime, policy: FleetPolicy) -> None:
        readings = beat.readings
        hot = readings.cpu >= policy.critical_threshold or readings.ram >= policy.critical_threshold
        self.pressure_streak = self.pressure_streak + 1 if hot else 0
        calm = not hot and beat.status is not AgentStatus.CRITICAL
        self.calm_streak = self.calm_streak + 1 if calm else 0
        self.reported_status = beat.status
        self.readings = readings
        self.last_seen = at
        if beat.name is not None:
            self.name = beat.name
        if beat.ip is not None:
            self.ip = beat.ip
        if beat.os is not None:
            self.os = beat.os
        if beat.version is not None:
            self.version = beat.version
        self.peers = beat.peers

    def _status_after_beat(
        self, reported: AgentStatus, current: AgentStatus, policy: FleetPolicy
    ) -> tuple[AgentStatus, str]:
        """The status heartbeats give an agent that had `current` and last reported `reported`, and why
        when it is CRITICAL."""
        if reported is AgentStatus.CRITICAL:
            return AgentStatus.CRITICAL, "reported by the agent"
        if self.pressure_streak >= policy.hysteresis:
            return AgentStatus.CRITICAL, (
                f"cpu or ram at or above {policy.critical_threshold:g}% for {self.pressure_streak} heartbeats"
            )
        if current is AgentStatus.CRITICAL and self.calm_streak < policy.hysteresis:
            return AgentStatus.CRITICAL, "not calm for long enough yet"
        return AgentStatus.ONLINE, ""


_agent_fields = attrgetter(*(field.name for field in dataclasses.fields(Agent)))
"""An agent's field values, in the order of its constructor's parameters."""
PROFILE = ("reported_status", "name", "ip", "os", "version", "peers")
"""What an agent says of itself besides its readings (see Agent.profile), in order."""
_agent_profile = attrgetter(*PROFILE)
