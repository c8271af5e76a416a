"""Hand-written fakes of core's ports, for unit tests of use cases (and the fake side of contract suites)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from worpen_core.access.model import ApiKey
from worpen_core.access.ports import ApiKeyRepository
from worpen_core.audit.model import AuditEntry, AuditQuery
from worpen_core.audit.ports import AuditRepository
from worpen_core.events.model import Event
from worpen_core.events.ports import EventHandler
from worpen_core.fleet.model import PROFILE, Agent, TelemetrySample
from worpen_core.fleet.ports import AgentRepository, SampleRepository
from worpen_core.shared.errors import Conflict, Unavailable


class FakeClock:
    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FakeEventBus:
    """Delivers each event to the subscribers as it is published, in the publisher's task."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self._handlers: list[EventHandler] = []

    async def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            self.published.append(event)
            for handler in self._handlers:
                await handler(event)

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)


class Store:
    """What the fake database holds; shared by every unit of work made from one factory."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.samples: list[TelemetrySample] = []
        self.api_keys: dict[str, ApiKey] = {}
        self.audit: dict[str, AuditEntry] = {}
        self.broken = False


class FakeAgentRepository:
    def __init__(self, store: Store, staged: dict[str, Agent], samples: list[TelemetrySample]) -> None:
        self._store = store
        self._staged = staged
        self._samples = samples

    async def get(self, agent_id: str) -> Agent | None:
        found = self._staged.get(agent_id) or self._store.agents.get(agent_id)
        return None if found is None else self._caught_up(found)

    async def list_all(self) -> list[Agent]:
        merged = {**self._store.agents, **self._staged}
        return [self._caught_up(merged[key]) for key in sorted(merged)]

    def _caught_up(self, stored: Agent) -> Agent:
        agent = stored.copy()
        mine = [sample for sample in [*self._store.samples, *self._samples] if sample.agent_id == agent.id]
        agent.catch_up(max(reversed(mine), key=lambda sample: sample.at, default=None))  # the last of a tie
        return agent

    async def save(self, agents: Sequence[Agent]) -> None:
        for agent in agents:
            self._staged[agent.id] = agent.copy()

    async def save_profiles(self, agents: Sequence[Agent]) -> None:
        for agent in agents:
            stored = self._staged.get(agent.id) or self._store.agents.get(agent.id)
            if stored is not None:
                profile = dict(zip(PROFILE, agent.profile(), strict=True))
                self._staged[agent.id] = dataclasses.replace(stored, **profile)  # type: ignore[arg-type]


class FakeSampleRepository:
    def __init__(self, staged: list[TelemetrySample], store: Store) -> None:
        self._staged = staged
        self._store = store

    async def add(self, samples: Sequence[TelemetrySample]) -> None:
        self._staged.extend(samples)

    async def for_agent(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        mine = [sample for sample in [*self._store.samples, *self._staged] if sample.agent_id == agent_id]
        return sorted(mine, key=lambda sample: sample.at, reverse=True)[:limit]


class FakeApiKeyRepository:
    def __init__(self, store: Store, staged: dict[str, ApiKey]) -> None:
        self._store = store
        self._staged = staged

    def _all(self) -> dict[str, ApiKey]:
        return {**self._store.api_keys, **self._staged}

    async def add(self, key: ApiKey) -> None:
        if (
            any(existing.secret_hash == key.secret_hash for existing in self._all().values())
            or key.id in self._all()
        ):
            raise Conflict("duplicate api key")
        self._staged[key.id] = key

    async def get(self, key_id: str) -> ApiKey | None:
        return self._all().get(key_id)

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        return next((key for key in self._all().values() if key.secret_hash == secret_hash), None)

    async def list_all(self) -> list[ApiKey]:
        return sorted(self._all().values(), key=lambda key: (key.created_at, key.id))

    async def update(self, key: ApiKey) -> None:
        self._staged[key.id] = key

    async def count(self) -> int:
        return len(self._all())


class FakeAuditRepository:
    def __init__(self, store: Store, staged: dict[str, AuditEntry]) -> None:
        self._store = store
        self._staged = staged

    async def add(self, entry: AuditEntry) -> None:
        if entry.id in self._store.audit or entry.id in self._staged:
            raise Conflict("duplicate audit entry")
        self._staged[entry.id] = entry

    async def update(self, entry: AuditEntry) -> None:
        self._staged[entry.id] = entry

    async def query(self, query: AuditQuery) -> list[AuditEntry]:
        matching = [
            entry
            for entry in {**self._store.audit, **self._staged}.values()
            if (query.since is None or entry.at >= query.since)
            and (query.actor is None or entry.actor == query.actor)
            and (query.action is None or entry.action == query.action)
        ]
        matching.sort(key=lambda entry: entry.id)
        matching.sort(key=lambda entry: entry.at, reverse=True)
        return matching[: query.limit]


class FakeUnitOfWork:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.committed = False
        self._agents: dict[str, Agent] = {}
        self._samples: list[TelemetrySample] = []
        self._keys: dict[str, ApiKey] = {}
        self._audit: dict[str, AuditEntry] = {}
        self.agents: AgentRepository = FakeAgentRepository(store, self._agents, self._samples)
        self.samples: SampleRepository = FakeSampleRepository(self._samples, store)
        self.api_keys: ApiKeyRepository = FakeApiKeyRepository(store, self._keys)
        self.audit: AuditRepository = FakeAuditRepository(store, self._audit)

    async def __aenter__(self) -> Self:
        if self._store.broken:
            raise Unavailable("database", "the fake database is broken")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._agents.clear()
        self._samples.clear()
        self._keys.clear()
        self._audit.clear()

    async def commit(self) -> None:
        if self._store.broken:
            raise Unavailable("database", "the fake database is broken")
        self._store.agents.update(self._agents)
        self._store.samples.extend(self._samples)
        self._store.api_keys.update(self._keys)
        self._store.audit.update(self._audit)
        self.committed = True


class FakeUnitOfWorkFactory:
    def __init__(self) -> None:
        self.store = Store()
        self.made: list[FakeUnitOfWork] = []

    def __call__(self) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self.store)
        self.made.append(uow)
        return uow
