"""Engine events with several replicas: every replica follows every engine (and knows whether it is
reachable), but a configured engine's events are published by the leader alone, and an agent's engine's by
the replica holding the agent's stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.unit.containers.test_attach import LiveRuntime, eventually, fleet, started, starts
from worpen_core.containers.events import EngineAvailable
from worpen_core.containers.jobs import container_jobs
from worpen_core.containers.service import Containers
from worpen_core.shared.jobs import Continuous


class Replica:
    """One replica's containers over its own connection to the shared engine "a", on its own bus."""

    def __init__(self, uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
        self.bus = FakeEventBus()
        self.engine = LiveRuntime("a")
        self.containers = fleet([self.engine], uow, clock, self.bus)
        self.stopping = asyncio.Event()
        self.leading = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.tasks.append(
            asyncio.create_task(self.containers.watch(self.stopping, 0.01, 0.02, configured=False))
        )
        await asyncio.wait_for(self.engine.following.wait(), 5)

    def lead(self) -> asyncio.Event:
        """Run the leader's job until the returned event is set."""
        deposed = asyncio.Event()
        self.tasks.append(asyncio.create_task(self.containers.publish(deposed)))
        return deposed

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)


async def replicas(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> AsyncIterator[Replica]:
    while True:
        replica = Replica(uow, clock)
        await replica.start()
        yield replica


async def test_only_the_leader_publishes_a_configured_engines_events(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    made = replicas(uow, clock)
    leader, other = await anext(made), await anext(made)
    deposed = leader.lead()
    await asyncio.sleep(0.02)

    for replica in (leader, other):  # each replica's stream sees the engine's event
        replica.engine.emit(started("web"))
    await eventually(lambda: starts(leader.bus, "a") == ["web"])
    await asyncio.sleep(0.05)

    assert starts(other.bus, "a") == []
    assert [status.available for status in other.containers.engines()] == [True]
    assert not any(isinstance(event, EngineAvailable) for event in other.bus.published)

    deposed.set()  # the leader changes: the other replica publishes from now on
    other_deposed = other.lead()
    await asyncio.sleep(0.02)
    for replica in (leader, other):
        replica.engine.emit(started("api"))
    await eventually(lambda: starts(other.bus, "a") == ["api"])
    await asyncio.sleep(0.05)
    other_deposed.set()
    await leader.stop()
    await other.stop()

    assert starts(leader.bus, "a") == ["web"]


async def test_an_agents_engine_is_published_by_the_replica_holding_its_stream(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    made = replicas(uow, clock)
    holder = await anext(made)
    agent = LiveRuntime("bee-001")

    holder.containers.attach(agent, {})  # not the leader: nothing runs `publish` here
    await asyncio.wait_for(agent.following.wait(), 5)
    agent.emit(started("web"))
    await eventually(lambda: starts(holder.bus, "bee-001") == ["web"])
    await holder.stop()

    assert any(isinstance(e, EngineAvailable) and e.node == "bee-001" for e in holder.bus.published)


def test_the_publishing_job_is_the_leaders_and_the_watch_every_replicas(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    containers: Containers = fleet([], uow, clock, bus)

    jobs = container_jobs(containers, first_retry=0.5, max_retry=30)

    assert [(job.name, job.singleton, isinstance(job, Continuous)) for job in jobs] == [
        ("engines.watch", False, True),
        ("engines.publish", True, True),
    ]
