"""The fleet service: live agent state in memory, transitions persisted before they are acknowledged,
telemetry written in batches (the design Nomad uses for its heartbeats). An agent's readings are stored as
its telemetry; the agent itself only when it registers, changes status or changes its profile."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime

from worpen_core.events.ports import EventBus
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import AgentEvent
from worpen_core.fleet.model import Agent, FleetPolicy, TelemetrySample
from worpen_core.fleet.ports import FleetUnitOfWorkFactory
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import NotFound
from worpen_core.shared.ports import Clock


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    status: AgentStatus
    next_heartbeat_seconds: int
    changed: bool
    """The heartbeat registered the agent, changed its status or raised or cleared an alert (it was
    committed and published)."""


class Fleet:
    def __init__(self, uow: FleetUnitOfWorkFactory, bus: EventBus, clock: Clock, policy: FleetPolicy) -> None:
        self._uow = uow
        self._bus = bus
        self._clock = clock
        self.policy = policy
        self._agents: dict[str, Agent] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._samples: deque[TelemetrySample] = deque(maxlen=policy.max_buffered_samples)
        self._dirty: set[str] = set()
        self._pending: list[tuple[Sequence[Agent], Sequence[AgentEvent], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._write = asyncio.Lock()
        self._paced_for = (-1, policy.heartbeat_interval)
        """The fleet size the pace was last computed for, and that pace."""
        self.heartbeats_ingested = 0
        self.samples_dropped = 0
        """Samples dropped, oldest first, because the buffer was full (the database was unavailable)."""

    async def restore(self) -> int:
        """Load the fleet as it was persisted; returns how many agents were restored."""
        async with self._uow() as uow:
            agents = await uow.agents.list_all()
        self._agents = {agent.id: agent for agent in agents}
        return len(agents)

    async def record_heartbeat(self, beat: RecordHeartbeat) -> HeartbeatAck:
        lock = self._locks.get(beat.agent_id)
        if lock is None:
            lock = self._locks[beat.agent_id] = asyncio.Lock()
        async with lock:
            now = self._clock.now()
            current = self._agents.get(beat.agent_id)
            events: list[AgentEvent]
            if current is None:
                agent, events = Agent.register(beat, now, self.policy)
            else:
                agent = current.copy()
                events = agent.beat(beat, now, self.policy)
            if events:
                await self._persist([agent], events)  # installs it in memory once committed
            else:
                self._agents[agent.id] = agent
                if current is not None and agent.profile() != current.profile():
                    self._dirty.add(agent.id)
            sample = agent.sample()
            measured = beat.measured_at
            if measured is not None and measured < now:
                sample = TelemetrySample(agent.id, measured, sample.readings)
            self._buffer(sample)
            self.heartbeats_ingested += 1
        return HeartbeatAck(agent.status, self._pace(), bool(events))

    async def begin_healing(self, agent_id: str, reason: str) -> None:
        """A remediation began on the agent's node: the agent is HEALING (persisted, `AgentHealing`) until
        the last remediation begun on it ends (`end_healing`, once per call to this). A node that is not an
        agent (a Docker host that sends no heartbeats) is left alone. Raises what the store raises
        (Unavailable) when the change cannot be written, and then nothing changed."""
        await self._heal(agent_id, lambda agent, now: agent.begin_healing(reason, now, self.policy))

    async def end_healing(self, agent_id: str) -> None:
        """A remediation begun with `begin_healing` ended: after the last one, the agent returns to what its
        heartbeats say (ONLINE or CRITICAL, or OFFLINE if they stopped), persisted, with its event."""
        await self._heal(agent_id, lambda agent, now: agent.end_healing(now, self.policy))

    async def sweep(self, agent_ids: Iterable[str] | None = None) -> list[AgentEvent]:
        """Mark OFFLINE every agent (or each of `agent_ids`) whose heartbeat is overdue."""
        now = self._clock.now()
        candidates = self._agents.values() if agent_ids is None else self._lookup(agent_ids)
        overdue = sorted(
            agent.id
            for agent in candidates
            if agent.status is not AgentStatus.OFFLINE and agent.is_overdue(now, self.policy)
        )
        if not overdue:
            return []
        async with AsyncExitStack() as stack:
            for agent_id in overdue:
                await stack.enter_async_context(self._locks.setdefault(agent_id, asyncio.Lock()))
            changed: list[Agent] = []
            events: list[AgentEvent] = []
            for agent_id in overdue:
                agent = self._agents[agent_id].copy()
                expired = agent.expire(self._clock.now(), self.policy)
                if expired:
                    changed.append(agent)
                    events.extend(expired)
            if changed:
                await self._persist(changed, events)
        return events

    async def flush(self) -> int:
        """Write buffered telemetry, and the agents whose profile changed (a name, an address...); returns
        samples written. Readings are written as samples only: the agent's row is not rewritten for each
        heartbeat, and reading an agent back takes the readings of its newest sample.
        On failure everything stays buffered for the next flush, as far as the buffer's bound allows."""
        if not self._samples:
            return 0
        samples = list(self._samples)
        self._samples.clear()
        dirty, self._dirty = self._dirty, set()
        try:
            async with self._write, self._uow() as uow:
                await uow.samples.add(samples)
                await uow.agents.save_profiles([self._agents[agent_id] for agent_id in sorted(dirty)])
                await uow.commit()
        except BaseException:
            self._requeue(samples)
            self._dirty |= dirty
            raise
        return len(samples)

    def get(self, agent_id: str) -> Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise NotFound("agent", agent_id)
        return agent

    async def history(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        """The agent's newest samples, newest first: those still buffered, then those written."""
        self.get(agent_id)
        buffered = [sample for sample in reversed(self._samples) if sample.agent_id == agent_id][:limit]
        if len(buffered) == limit:
            return buffered
        async with self._uow() as uow:
            written = await uow.samples.for_agent(agent_id, limit - len(buffered))
        return buffered + written

    def query(self, status: AgentStatus | None = None, after: str | None = None) -> list[Agent]:
        """Agents ordered by id, optionally only those with `status` and ids greater than `after`."""
        return sorted(
            (
                agent
                for agent in self._agents.values()
                if (status is None or agent.status is status) and (after is None or agent.id > after)
            ),
            key=lambda agent: agent.id,
        )

    def agents(self) -> list[Agent]:
        """Every agent as it is now, in no particular order (the fleet-wide figures read these)."""
        return list(self._agents.values())

    def count_by_status(self) -> dict[AgentStatus, int]:
        counts = dict.fromkeys(AgentStatus, 0)
        for agent in self._agents.values():
            counts[agent.status] += 1
        return counts

    @property
    def size(self) -> int:
        return len(self._agents)

    @property
    def buffered_samples(self) -> int:
        return len(self._samples)

    def _pace(self) -> int:
        """`policy.next_heartbeat_seconds` for the fleet's size, computed again only when the size changed."""
        size = len(self._agents)
        if size != self._paced_for[0]:
            self._paced_for = (size, self.policy.next_heartbeat_seconds(size))
        return self._paced_for[1]

    def _buffer(self, sample: TelemetrySample) -> None:
        if len(self._samples) == self._samples.maxlen:
            self.samples_dropped += 1  # the deque drops the oldest
        self._samples.append(sample)

    def _requeue(self, unwritten: list[TelemetrySample]) -> None:
        """Put samples a flush could not write back before those that came since, dropping the oldest
        if they no longer all fit."""
        merged = [*unwritten, *self._samples]
        excess = max(0, len(merged) - self.policy.max_buffered_samples)
        self.samples_dropped += excess
        self._samples = deque(merged[excess:], maxlen=self.policy.max_buffered_samples)

    def _lookup(self, agent_ids: Iterable[str]) -> list[Agent]:
        return [self.get(agent_id) for agent_id in agent_ids]

    async def _heal(self, agent_id: str, change: Callable[[Agent, datetime], list[AgentEvent]]) -> None:
        if agent_id not in self._agents:
            return
        async with self._locks.setdefault(agent_id, asyncio.Lock()):
            agent = self._agents[agent_id].copy()
            events = change(agent, self._clock.now())
            if events:
                await self._persist([agent], events)
            else:
                self._agents[agent_id] = agent

    async def _persist(self, agents: Sequence[Agent], events: Sequence[AgentEvent]) -> None:
        """Commit these agents, then publish the events. Concurrent callers share one transaction
        (group commit): a burst of registrations costs one fsync, not one each."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((agents, events, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        await asyncio.shield(done)

    async def _commit_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            latest = {agent.id: agent for agents, _, _ in batch for agent in agents}
            try:
                async with self._write, self._uow() as uow:
                    await uow.agents.save(list(latest.values()))
                    await uow.commit()
            except Exception as exc:
                for _, _, done in batch:
                    done.set_exception(exc)
                continue
            self._agents.update(latest)  # here, not in the callers: a caller that went away can't skip it
            try:
                await self._bus.publish([event for _, events, _ in batch for event in events])
            finally:
                for _, _, done in batch:
                    done.set_result(None)
