"""The fleet's aggregate: one agent (a node) and the status machine its heartbeats drive."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter

from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentEvent,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
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


@dataclass(slots=True)
class Agent:
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

    @classmethod
    def register(cls, beat: RecordHeartbeat, at: datetime, policy: FleetPolicy) -> tuple[Agent, AgentEvent]:
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
        agent.status = agent._status_after_beat(beat, policy)[0]
        return agent, AgentRegistered(agent.id, at, agent.status)

    def copy(self) -> Agent:
        return Agent(*_agent_fields(self))  # a tenth of dataclasses.replace's cost, on every heartbeat

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
        return [AgentWentOffline(self.id, now, self.last_seen)]

    def beat(self, beat: RecordHeartbeat, at: datetime, policy: FleetPolicy) -> list[AgentEvent]:
        """Take in a heartbeat; return the events of the transitions it caused (none, most of the time)."""
        events = self.expire(at, policy)
        previous = self.status
        self._absorb(beat, at, policy)
        if previous is AgentStatus.HEALING:
            return events
        target, reason = self._status_after_beat(beat, policy)
        if target is previous:
            return events
        self.status = target
        if target is AgentStatus.CRITICAL:
            events.append(AgentBecameCritical(self.id, at, reason, beat.readings.cpu, beat.readings.ram))
        else:
            events.append(AgentRecovered(self.id, at, previous))
        return events

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

    def _status_after_beat(self, beat: RecordHeartbeat, policy: FleetPolicy) -> tuple[AgentStatus, str]:
        if beat.status is AgentStatus.CRITICAL:
            return AgentStatus.CRITICAL, "reported by the agent"
        if self.pressure_streak >= policy.hysteresis:
            return AgentStatus.CRITICAL, (
                f"cpu or ram at or above {policy.critical_threshold:g}% for {self.pressure_streak} heartbeats"
            )
        if self.status is AgentStatus.CRITICAL and self.calm_streak < policy.hysteresis:
            return AgentStatus.CRITICAL, ""
        return AgentStatus.ONLINE, ""


_agent_fields = attrgetter(*(field.name for field in dataclasses.fields(Agent)))
"""An agent's field values, in the order of its constructor's parameters."""
PROFILE = ("reported_status", "name", "ip", "os", "version", "peers")
"""What an agent says of itself besides its readings (see Agent.profile), in order."""
_agent_profile = attrgetter(*PROFILE)
