"""Domain events: facts, named in the past tense, published after they are committed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.status import AgentStatus


@dataclass(frozen=True, slots=True)
class Event:
    agent_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentRegistered(Event):
    status: AgentStatus


@dataclass(frozen=True, slots=True)
class AgentWentOffline(Event):
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class AgentBecameCritical(Event):
    reason: str
    cpu: float
    ram: float


@dataclass(frozen=True, slots=True)
class AgentRecovered(Event):
    previous: AgentStatus
