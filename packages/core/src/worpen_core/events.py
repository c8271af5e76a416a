"""Domain events: facts, named in the past tense, published after they are committed (or, for a
container, after its engine reported them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.status import AgentStatus


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every domain event; `subject` says what it is about, for logs and feeds."""

    @property
    def subject(self) -> str:
        raise NotImplementedError


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
class ContainerEvent(Event):
    """Something a node's Docker engine reported about one of its containers."""

    node: str
    container_id: str
    name: str
    image: str
    at: datetime

    @property
    def subject(self) -> str:
        return f"{self.node}/{self.name or self.container_id[:12]}"


@dataclass(frozen=True, slots=True)
class ContainerStarted(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ContainerStopped(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ContainerDied(ContainerEvent):
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class ContainerOomKilled(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ContainerHealthChanged(ContainerEvent):
    health: str
    """HEALTHY, UNHEALTHY or STARTING."""


@dataclass(frozen=True, slots=True)
class ContainerRemoved(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ImagePulled(Event):
    node: str
    image: str
    at: datetime

    @property
    def subject(self) -> str:
        return f"{self.node}/{self.image}"


@dataclass(frozen=True, slots=True)
class EngineUnavailable(Event):
    """Worpen lost a node's Docker engine (and keeps retrying)."""

    node: str
    detail: str
    at: datetime

    @property
    def subject(self) -> str:
        return self.node


@dataclass(frozen=True, slots=True)
class EngineAvailable(Event):
    """Worpen reached a node's Docker engine (again)."""

    node: str
    at: datetime

    @property
    def subject(self) -> str:
        return self.node
