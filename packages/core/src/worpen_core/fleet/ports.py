"""What the fleet needs from storage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from worpen_core.fleet.model import Agent, TelemetrySample
from worpen_core.shared.ports import UnitOfWork


class AgentRepository(Protocol):
    """Agents as last stored, each caught up with its newest telemetry sample (`Agent.catch_up`)."""

    async def get(self, agent_id: str) -> Agent | None: ...

    async def list_all(self) -> list[Agent]: ...

    async def save(self, agents: Sequence[Agent]) -> None:
        """Insert or update these agents, whole."""
        ...

    async def save_profiles(self, agents: Sequence[Agent]) -> None:
        """Update what these agents say of themselves (`Agent.profile`), and nothing else: not their
        status, not their readings (those are stored as samples)."""
        ...


class SampleRepository(Protocol):
    async def add(self, samples: Sequence[TelemetrySample]) -> None: ...

    async def for_agent(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        """The agent's newest samples, newest first."""
        ...


class FleetUnitOfWork(UnitOfWork, Protocol):
    """A transaction over agents and their telemetry."""

    agents: AgentRepository
    samples: SampleRepository


FleetUnitOfWorkFactory = Callable[[], FleetUnitOfWork]
