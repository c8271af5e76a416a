"""What happens to agents: registered, offline, critical, recovered, healing, a metric high or cleared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from worpen_core.events.model import Event
from worpen_core.fleet.status import AgentStatus


class Metric(StrEnum):
    """A reading that raises an alert when it stays high (see FleetPolicy's thresholds)."""

    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"


@dataclass(frozen=True, slots=True)
class AgentEvent(Event):
    agent_id: str
    at: datetime

    @property
    def subject(self) -> str:
        return self.agent_id


@dataclass(frozen=True, slots=True)
class AgentRegistered(AgentEvent):
    status: AgentStatus


@dataclass(frozen=True, slots=True)
class AgentWentOffline(AgentEvent):
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class AgentBecameCritical(AgentEvent):
    reason: str
    cpu: float
    ram: float


@dataclass(frozen=True, slots=True)
class AgentRecovered(AgentEvent):
    previous: AgentStatus


@dataclass(frozen=True, slots=True)
class AgentHealing(AgentEvent):
    """A remediation began on the agent's node: its status is HEALING until the last one ends."""

    reason: str


@dataclass(frozen=True, slots=True)
class AgentMetricHigh(AgentEvent):
    """`metric` stayed at or above `threshold` for the policy's hysteresis; `value` is the last reading."""

    metric: Metric
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class AgentMetricCleared(AgentEvent):
    """`metric` stayed below `threshold` minus the policy's clear margin for the policy's hysteresis."""

    metric: Metric
    value: float
    threshold: float
