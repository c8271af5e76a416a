"""What the fleet needs from storage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from worpen_core.fleet.model import Agent, TelemetrySample
from worpen_core.shared.ports import UnitOfWork


class AgentRepository(Protocol):
    """Agents as last stored, each caught up with its newest telemetry sample (`Agent.catch_up`)."""

    async def get(self, agent_id: str) -> Agent | None: ...

    async def get_many(self, agent_ids: Sequence[str]) -> list[Agent]:
        """Those of these agents that are stored, in no particular order."""
        ...

    async def list_all(self) -> list[Agent]: ...

    async def changed_since(self, since: datetime) -> list[Agent]:
        """The agents whose stored state changed (`Agent.changed_at`) at or after `since`."""
        ...

    async def newest_samples(self, after: int | None) -> tuple[list[TelemetrySample], int]:
        """Each agent's newest telemetry sample among those numbered above `after` (written by any
        replica), and the highest number seen, the next call's `after`. None: no samples, only the
        highest number so far (where a replica starts from)."""
        ...

    async def save(self, agents: Sequence[Agent]) -> list[str]:
        """Insert or update these agents, whole, each at `revision + 1`, if its row is still at the
        agent's `revision` (0: no row yet). Returns the ids of those whose row was not: another writer
        changed them first; the others are written all the same."""
        ...

    async def save_profiles(self, agents: Sequence[Agent]) -> None:
        """Update what these agents say of themselves (`Agent.profile`), and nothing else: not their
        status, not their readings (those are stored as samples). Each row's revision moves on, and its
        `changed_at` becomes the agent's."""
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
