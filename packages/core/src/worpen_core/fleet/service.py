"""The fleet service: live agent state in memory, transitions persisted before they are acknowledged,
telemetry written in batches (the design Nomad uses for its heartbeats). An agent's readings are stored as
its telemetry; the agent itself only when it registers, changes status or changes its profile.

Replicas sharing one database each hold the fleet in memory, and one agent's heartbeats may land on any of
them. A transition is saved only if the agent's row is still at the revision this replica knows; when
another replica changed it first, the agent is read again and the heartbeat (or sweep, or remediation)
applied once more to what is stored, so a transition is never lost nor made twice. Each replica takes in
what the others changed (`refresh`), and the sweeper reads overdue agents again before it expires them:
the heartbeats another replica received reach the database as telemetry samples within a flush."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from worpen_core.events.ports import EventBus
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.events import AgentEvent
from worpen_core.fleet.model import Agent, FleetPolicy, TelemetrySample
from worpen_core.fleet.ports import FleetUnitOfWorkFactory
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import Conflict, NotFound
from worpen_core.shared.ports import Clock


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    status: AgentStatus
    next_heartbeat_seconds: int
    changed: bool
    """The heartbeat registered the agent, changed its status or raised or cleared an alert (it was
    committed and published)."""


Change = Callable[[Agent], list[AgentEvent]]
"""A change made to a copy of an agent, returning its events: applied again to the stored state when
another replica changed the agent first."""

ATTEMPTS = 5
"""Times a change is applied to a fresh copy of its agent before it fails with Conflict: each attempt
lost to another replica's write to the same agent, a contention two replicas cannot keep up for long."""

READINGS_EVERY = timedelta(seconds=5)
"""How often a refresh also reads the telemetry samples other replicas flushed (for readings and when each
agent was last seen, which only the listings show: the sweeper and a heartbeat read an agent that seems
gone again themselves). Every replica reads every sample back: at the heartbeats' pace that doubled what
PostgreSQL does per heartbeat with two replicas; an agent heartbeating every 10 s is read back half as
often this way, one heartbeating every second a fifth."""
REFRESH_OVERLAP = timedelta(seconds=10)
"""How far before its last look a refresh looks again: a change stamped by another replica's clock (a
little behind this one's) or committed after the last look (stamped before it) is still taken in."""


@dataclass(slots=True)
class _Write:
    agent: Agent
    """The changed copy, to be saved."""
    before: Agent | None
    """What the change was applied to (None: a registration); what lives in memory only is kept from it
    when the change is applied again."""
    events: list[AgentEvent]
    change: Change
    done: asyncio.Future[tuple[Agent, list[AgentEvent]]]
    """The agent and the events as committed and published."""
    attempts: int = 1


class Fleet:
    def __init__(
        self,
        uow: FleetUnitOfWorkFactory,
        bus: EventBus,
        clock: Clock,
        policy: FleetPolicy,
        *,
        shared: bool = False,
    ) -> None:
        """`shared`: other replicas write to the same database (PostgreSQL); the sweeper then reads overdue
        agents again before expiring them, and `refresh` has something to take in. With one replica memory
        is the truth and neither costs anything."""
        self._uow = uow
        self._bus = bus
        self._clock = clock
        self.policy = policy
        self._agents: dict[str, Agent] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._samples: deque[TelemetrySample] = deque(maxlen=policy.max_buffered_samples)
        self._dirty: set[str] = set()
        self.shared = shared
        self._pending: list[_Write] = []
        self._committer: asyncio.Task[None] | None = None
        self._write = asyncio.Lock()
        self._paced_for = (-1, policy.heartbeat_interval)
        """The fleet size the pace was last computed for, and that pace."""
        self.heartbeats_ingested = 0
        self.samples_dropped = 0
        """Samples dropped, oldest first, because the buffer was full (the database was unavailable)."""
        self._looked_at: datetime | None = None
        """When `restore` or the last `refresh` read the store."""
        self._samples_seen: int | None = None
        """The number of the newest telemetry sample `refresh` has seen (None: it has not looked yet)."""
        self._samples_read_at: datetime | None = None

    async def restore(self) -> int:
        """Load the fleet as it was persisted; returns how many agents were restored."""
        looked_at = self._clock.now()
        async with self._uow() as uow:
            agents = await uow.agents.list_all()
            _, self._samples_seen = await uow.agents.newest_samples(None)
        self._agents = {agent.id: agent for agent in agents}
        self._looked_at = looked_at
        return len(agents)

    async def refresh(self) -> int:
        """Take in what other replicas stored since the last look (registrations, transitions, profiles,
        and every `READINGS_EVERY` the readings of the heartbeats they received), so that every replica
        lists the same agents with the same statuses and readings; returns how many agents' stored state
        changed here (readings aside). A row this replica already holds at its revision changes nothing."""
        looked_at = self._clock.now()
        since = looked_at if self._looked_at is None else self._looked_at
        read_samples = self._samples_read_at is None or looked_at - self._samples_read_at >= READINGS_EVERY
        samples: list[TelemetrySample] = []
        async with self._uow() as uow:
            stored = await uow.agents.changed_since(since - REFRESH_OVERLAP)
            if read_samples:
                samples, self._samples_seen = await uow.agents.newest_samples(self._samples_seen)
                self._samples_read_at = looked_at
        for sample in samples:  # heartbeats other replicas received: readings and when last seen
            local = self._agents.get(sample.agent_id)
            if local is not None:
                local.catch_up(sample)
        taken = 0
        for fresh in stored:
            local = self._agents.get(fresh.id)
            if local is not None and fresh.revision <= local.revision:
                continue
            async with self._locks.setdefault(fresh.id, asyncio.Lock()):
                local = self._agents.get(fresh.id)
                if local is None:
                    self._agents[fresh.id] = fresh
                elif fresh.revision > local.revision:
                    self._agents[fresh.id] = self._adopted(local, fresh)
                else:
                    continue
                taken += 1
        self._looked_at = looked_at
        return taken

    async def record_heartbeat(self, beat: RecordHeartbeat) -> HeartbeatAck:
        lock = self._locks.get(beat.agent_id)
        if lock is None:
            lock = self._locks[beat.agent_id] = asyncio.Lock()
        async with lock:
            now = self._clock.now()
            current = self._agents.get(beat.agent_id)
            if self.shared and current is not None and self._seems_gone(current, now):
                current = await self._read_again(current)
            events: list[AgentEvent]
            if current is None:
                agent, events = Agent.register(beat, now, self.policy)
            else:
                agent = current.copy()
                events = agent.beat(beat, now, self.policy)
            # Events, or the status underneath a remediation (stored: every replica keeps it), are saved;
            # the common heartbeat changes neither, and costs two identity checks.
            if events or (current is not None and agent.healing is not current.healing):
                change = partial(Agent.beat, beat=beat, at=now, policy=self.policy)
                # installs it in memory once committed
                [(agent, events)] = await self._persist([_write(agent, current, events, change)])
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
        the last remediation begun on it ends (`end_healing`, once per call to this), on whichever replica.
        A node that is not an agent (a Docker host that sends no heartbeats) is left alone. Raises what the
        store raises (Unavailable) when the change cannot be written, and then nothing changed."""
        await self._heal(agent_id, lambda agent, now: agent.begin_healing(reason, now, self.policy))

    async def end_healing(self, agent_id: str) -> None:
        """A remediation begun with `begin_healing` ended: after the last one, the agent returns to what its
        heartbeats say (ONLINE or CRITICAL, or OFFLINE if they stopped), persisted, with its event."""
        await self._heal(agent_id, lambda agent, now: agent.end_healing(now, self.policy))

    async def end_leftover_healing(self) -> int:
        """End every remediation stored on any agent, each agent returning to what its heartbeats say (with
        its event); how many agents changed. For a rule engine that starts leading (a new leader, a server
        starting): only the leading rule engine begins remediations, and the one that led before stopped
        with its own (cancelled, or killed with its replica), so whatever is stored now was left behind
        and nothing else would end it. Ending them all, rather than those of the runs left RUNNING, also
        frees a node whose run was recorded finished but whose end was never written."""
        if self.shared:
            await self.refresh()  # what the previous leader stored since this replica last looked
        healing = sorted(
            agent.id
            for agent in self._agents.values()
            if agent.healing is not None or agent.status is AgentStatus.HEALING
        )
        if not healing:
            return 0
        async with self._locked_and_fresh(healing):
            end = partial(Agent.end_all_healing, at=self._clock.now(), policy=self.policy)
            writes: list[_Write] = []
            for agent_id in healing:
                before = self._agents[agent_id]
                agent = before.copy()
                ended = end(agent)
                if _saved(agent, before, ended):
                    writes.append(_write(agent, before, ended, end))
            committed = await self._persist(writes) if writes else []
        return len(committed)

    @asynccontextmanager
    async def _locked_and_fresh(self, agent_ids: list[str]) -> AsyncIterator[None]:
        """Hold the locks of `agent_ids` (sorted: no two callers deadlock), each agent read again first
        with a shared store (another replica may have changed it)."""
        async with AsyncExitStack() as stack:
            for agent_id in agent_ids:
                await stack.enter_async_context(self._locks.setdefault(agent_id, asyncio.Lock()))
            if self.shared:
                async with self._uow() as uow:
                    for fresh in await uow.agents.get_many(agent_ids):
                        self._agents[fresh.id] = self._adopted(self._agents[fresh.id], fresh)
            yield

    async def sweep(self, agent_ids: Iterable[str] | None = None) -> list[AgentEvent]:
        """Mark OFFLINE every agent (or each of `agent_ids`) whose heartbeat is overdue. With a shared
        store, overdue agents are read again first: their heartbeats may have gone to another replica."""
        now = self._clock.now()
        candidates = self._agents.values() if agent_ids is None else self._lookup(agent_ids)
        overdue = sorted(
            agent.id
            for agent in candidates
            if agent.status is not AgentStatus.OFFLINE and agent.is_overdue(now, self.policy)
        )
        if not overdue:
            return []
        async with self._locked_and_fresh(overdue):
            writes: list[_Write] = []
            expire = partial(Agent.expire, now=self._clock.now(), policy=self.policy)
            for agent_id in overdue:
                before = self._agents[agent_id]
                agent = before.copy()
                expired = expire(agent)
                if expired:
                    writes.append(_write(agent, before, expired, expire))
            committed = await self._persist(writes) if writes else []
        return [event for _, events in committed for event in events]

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
        profiles = [self._agents[agent_id] for agent_id in sorted(dirty)]
        now = self._clock.now()
        for agent in profiles:
            agent.changed_at = now
        try:
            async with self._write, self._uow() as uow:
                await uow.samples.add(samples)
                await uow.agents.save_profiles(profiles)
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
            before = self._agents[agent_id]
            now = self._clock.now()
            if self.shared and self._seems_gone(before, now):
                before = await self._read_again(before)
            agent = before.copy()
            events = change(agent, now)
            if _saved(agent, before, events):
                await self._persist([_write(agent, before, events, lambda fresh: change(fresh, now))])
            else:
                self._agents[agent_id] = agent

    def _seems_gone(self, agent: Agent, now: datetime) -> bool:
        """Whether this replica would mark the agent OFFLINE, which its heartbeats to another replica may
        contradict."""
        return agent.status is not AgentStatus.OFFLINE and agent.is_overdue(now, self.policy)

    async def _read_again(self, local: Agent) -> Agent:
        """The agent as the store says it is now, installed in memory (the caller holds its lock)."""
        async with self._uow() as uow:
            stored = await uow.agents.get(local.id)
        if stored is None:
            return local
        adopted = self._agents[local.id] = self._adopted(local, stored)
        return adopted

    def _adopted(self, local: Agent, stored: Agent) -> Agent:
        """`local` as `stored` says it is now; a profile this replica has yet to write stays its own."""
        merged = local.adopt(stored)
        if local.id in self._dirty:
            merged.name, merged.ip, merged.os = local.name, local.ip, local.os
            merged.version, merged.peers, merged.reported_status = (
                local.version,
                local.peers,
                local.reported_status,
            )
        return merged

    async def _persist(self, writes: Sequence[_Write]) -> list[tuple[Agent, list[AgentEvent]]]:
        """Commit these changes, then publish their events; returns each agent and its events as
        committed (applied again to what is stored if another replica changed the agent first). Concurrent
        callers share one transaction (group commit): a burst of registrations costs one fsync, not one
        each. The caller holds each agent's lock."""
        self._pending.extend(writes)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        return list(await asyncio.shield(asyncio.gather(*(write.done for write in writes))))

    async def _commit_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            now = self._clock.now()
            for write in batch:
                write.agent.changed_at = now
            try:
                async with self._write, self._uow() as uow:
                    stale = set(await uow.agents.save([write.agent for write in batch]))
                    await uow.commit()
            except Exception as exc:
                for write in batch:
                    write.done.set_exception(exc)
                continue
            committed = [write for write in batch if write.agent.id not in stale]
            for write in committed:  # here, not in the callers: a caller that went away can't skip it
                write.agent.revision += 1
                self._agents[write.agent.id] = write.agent
            published = [event for write in committed for event in write.events]
            try:
                if published:
                    await self._bus.publish(published)
            finally:
                for write in committed:
                    write.done.set_result((write.agent, write.events))
            if stale:
                await self._apply_again([write for write in batch if write.agent.id in stale])

    async def _apply_again(self, writes: list[_Write]) -> None:
        """Another replica changed these agents first: read them again and apply each change once more to
        what is stored; those that still change something go into the next batch."""
        try:
            async with self._uow() as uow:
                stored = {
                    agent.id: agent for agent in await uow.agents.get_many([w.agent.id for w in writes])
                }
        except Exception as exc:
            for write in writes:
                write.done.set_exception(exc)
            return
        for write in writes:
            fresh = stored.get(write.agent.id)
            if fresh is None or write.attempts >= ATTEMPTS:
                write.done.set_exception(Conflict(f"agent {write.agent.id} is being changed elsewhere"))
                continue
            before = fresh if write.before is None else self._adopted(write.before, fresh)
            agent = before.copy()
            events = write.change(agent)
            if _saved(agent, before, events):
                self._pending.append(
                    _Write(agent, before, events, write.change, write.done, write.attempts + 1)
                )
            else:
                self._agents[agent.id] = agent
                write.done.set_result((agent, []))


def _saved(agent: Agent, before: Agent, events: list[AgentEvent]) -> bool:
    """Whether a change to a copy of `before` must be saved: it made events, or changed the remediations
    (one begun while another runs, one ended while others remain, the status underneath moved), which
    are stored and make no event."""
    return bool(events) or agent.healing is not before.healing


def _write(agent: Agent, before: Agent | None, events: list[AgentEvent], change: Change) -> _Write:
    return _Write(agent, before, events, change, asyncio.get_running_loop().create_future())
