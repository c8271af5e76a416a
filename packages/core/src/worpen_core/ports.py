"""Ports: what the domain needs from the outside world, as Protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from worpen_core.agents import Agent, TelemetrySample
from worpen_core.auth import ApiKey
from worpen_core.events import Event


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class EventBus(Protocol):
    async def publish(self, events: Iterable[Event]) -> None: ...


class AgentRepository(Protocol):
    async def get(self, agent_id: str) -> Agent | None: ...

    async def list_all(self) -> list[Agent]: ...

    async def save(self, agents: Sequence[Agent]) -> None:
        """Insert or update these agents, whole."""
        ...

    async def save_readings(self, agents: Sequence[Agent]) -> None:
        """Update what the agents last reported, leaving their status alone, and never
        overwrite a newer reading with an older one."""
        ...


class SampleRepository(Protocol):
    async def add(self, samples: Sequence[TelemetrySample]) -> None: ...

    async def for_agent(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        """The agent's newest samples, newest first."""
        ...


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> None: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def by_hash(self, secret_hash: str) -> ApiKey | None: ...

    async def list_all(self) -> list[ApiKey]: ...

    async def update(self, key: ApiKey) -> None: ...

    async def count(self) -> int: ...


class UnitOfWork(Protocol):
    """The one transaction boundary: leaving it without `commit()` rolls everything back."""

    agents: AgentRepository
    samples: SampleRepository
    api_keys: ApiKeyRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
