"""Ports: what the domain needs from the outside world, as Protocols the adapters implement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from worpen_core.agents import Agent, TelemetrySample
from worpen_core.audit import AuditEntry, AuditQuery
from worpen_core.auth import ApiKey
from worpen_core.containers import (
    Container,
    ContainerDetail,
    EngineEvent,
    EngineInfo,
    Image,
    LogLine,
    LogQuery,
    PruneReport,
    PruneRequest,
    PullProgress,
)
from worpen_core.events import Event


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class EventBus(Protocol):
    async def publish(self, events: Iterable[Event]) -> None: ...


class AgentRepository(Protocol):
    """Agents as last stored, each caught up with its newest telemetry sample (`Agent.catch_up`)."""

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


class AuditRepository(Protocol):
    async def add(self, entry: AuditEntry) -> None: ...

    async def update(self, entry: AuditEntry) -> None: ...

    async def query(self, query: AuditQuery) -> list[AuditEntry]:
        """Matching entries, newest first."""
        ...


class UnitOfWork(Protocol):
    """The one transaction boundary: leaving it without `commit()` rolls everything back."""

    agents: AgentRepository
    samples: SampleRepository
    api_keys: ApiKeyRepository
    audit: AuditRepository

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


class TerminalChannel(Protocol):
    """An interactive process (a shell with a TTY) running in a container."""

    async def read(self) -> bytes:
        """The next output; b"" once the process has ended."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class ContainerRuntime(Protocol):
    """One node's container engine. Failures come out as core errors: NotFound, Conflict, InvalidInput,
    Unavailable (the engine cannot be reached or did not answer in time) and EngineFailed (it answered
    with an error). Container references are full ids, unique id prefixes or names."""

    node: str

    async def info(self) -> EngineInfo: ...

    async def list_containers(self) -> list[Container]:
        """Every container, running or not, from one call to the engine."""
        ...

    async def inspect(self, ref: str) -> ContainerDetail: ...

    async def logs(self, ref: str, query: LogQuery) -> AsyncIterator[Sequence[LogLine]]:
        """Open the log (raising if the engine refuses) and return its lines in the batches they are
        read, never the whole log at once; with `query.follow`, new lines until the container stops or
        the iterator is closed."""
        ...

    async def start(self, ref: str) -> None: ...

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        """Ask it to stop, killing it after `grace_seconds` (the engine's default when None)."""
        ...

    async def restart(self, ref: str, grace_seconds: int | None) -> None:
        """Ask it to stop, killing it after `grace_seconds` (the engine's default when None)."""
        ...

    async def remove(self, ref: str, *, force: bool, volumes: bool) -> None: ...

    async def prune(self, request: PruneRequest) -> PruneReport: ...

    async def list_images(self) -> list[Image]: ...

    async def pull(self, image: str) -> AsyncIterator[PullProgress]:
        """Start pulling (raising if the engine refuses) and return its progress messages until the image
        is pulled; an error in the stream is raised as EngineFailed."""
        ...

    async def exec(self, ref: str, command: Sequence[str]) -> TerminalChannel:
        """Run `command` in the container with a TTY and stdin attached."""
        ...

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        """Open the engine's event stream from `since_nanos` (or from now) on; it ends (or raises
        Unavailable) when the engine goes away."""
        ...
