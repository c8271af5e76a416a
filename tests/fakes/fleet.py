"""The fleet's repositories, in memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from tests.fakes.store import Store
from worpen_core.fleet.model import PROFILE, Agent, TelemetrySample


def _as_stored(agent: Agent) -> Agent:
    """The agent as the SQL store gives it back: what lives in memory only (the streaks) starts afresh."""
    return Agent(
        agent.id,
        agent.name,
        agent.status,
        agent.reported_status,
        agent.readings,
        agent.last_seen,
        agent.registered_at,
        agent.ip,
        agent.os,
        agent.version,
        agent.peers,
        alerts=agent.alerts,
        healing=agent.healing,
        revision=agent.revision,
        changed_at=agent.changed_at,
    )


class FakeAgentRepository:
    def __init__(self, store: Store, staged: dict[str, Agent], samples: list[TelemetrySample]) -> None:
        self._store = store
        self._staged = staged
        self._samples = samples

    async def get(self, agent_id: str) -> Agent | None:
        found = self._staged.get(agent_id) or self._store.agents.get(agent_id)
        return None if found is None else self._caught_up(found)

    async def get_many(self, agent_ids: Sequence[str]) -> list[Agent]:
        return [agent for agent in [await self.get(agent_id) for agent_id in agent_ids] if agent is not None]

    async def list_all(self) -> list[Agent]:
        merged = {**self._store.agents, **self._staged}
        return [self._caught_up(merged[key]) for key in sorted(merged)]

    async def changed_since(self, since: datetime) -> list[Agent]:
        return [
            agent
            for agent in await self.list_all()
            if agent.changed_at is not None and agent.changed_at >= since
        ]

    def _caught_up(self, stored: Agent) -> Agent:
        agent = stored.copy()
        mine = [sample for sample in [*self._store.samples, *self._samples] if sample.agent_id == agent.id]
        agent.catch_up(max(reversed(mine), key=lambda sample: sample.at, default=None))  # the last of a tie
        return agent

    async def newest_samples(self, after: int | None) -> tuple[list[TelemetrySample], int]:
        numbered = list(zip(self._store.sample_ids, self._store.samples, strict=True))
        last = numbered[-1][0] if numbered else 0
        if after is None:
            return [], last
        newest = {sample.agent_id: sample for number, sample in numbered if number > after}
        return list(newest.values()), max(last, after)

    async def save(self, agents: Sequence[Agent]) -> list[str]:
        stale = []
        for agent in agents:
            stored = self._staged.get(agent.id) or self._store.agents.get(agent.id)
            if (0 if stored is None else stored.revision) != agent.revision:
                stale.append(agent.id)
                continue
            self._staged[agent.id] = dataclasses.replace(_as_stored(agent), revision=agent.revision + 1)
        return stale

    async def save_profiles(self, agents: Sequence[Agent]) -> None:
        for agent in agents:
            stored = self._staged.get(agent.id) or self._store.agents.get(agent.id)
            if stored is not None:
                profile = dict(zip(PROFILE, agent.profile(), strict=True))
                self._staged[agent.id] = dataclasses.replace(
                    stored,
                    revision=stored.revision + 1,
                    changed_at=agent.changed_at,
                    **profile,  # type: ignore[arg-type]
                )


class FakeSampleRepository:
    def __init__(self, staged: list[TelemetrySample], store: Store) -> None:
        self._staged = staged
        self._store = store

    async def add(self, samples: Sequence[TelemetrySample]) -> None:
        self._staged.extend(samples)

    async def for_agent(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        mine = [sample for sample in [*self._store.samples, *self._staged] if sample.agent_id == agent_id]
        return sorted(mine, key=lambda sample: sample.at, reverse=True)[:limit]
