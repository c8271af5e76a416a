"""What happens to agents: registered, offline, critical, recovered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.events.model import Event
from worpen_core.fleet.status import AgentStatus


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
