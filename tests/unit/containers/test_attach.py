"""Engines that attach while Worpen runs (agents' engines): their events are followed from then on, a
reconnect replaces what was followed, a lost one fails fast, and listings say how old their inventory is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.agents import FakeAgentLink, FakeAgentRuntime
from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.events import ContainerEvent, ContainerStarted, EngineAvailable, EngineUnavailable
from worpen_core.containers.model import Container, ContainerState, EngineEvent
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.shared.errors import Unavailable

ID = "c0ffee" + "0" * 58


def container(node: str) -> Container:
    return Container(ID, "web", "img:1", ContainerState.RUNNING, "Up", node, datetime(2026, 1, 1, tzinfo=UTC))


def started(name: str) -> EngineEvent:
    return EngineEvent("container", "start", ID, {"name": name, "image": "img:1"}, 1_700_000_000 * 10**9)


class LiveRuntime(FakeRuntime):
    """An engine whose event stream stays open, yielding what `emit` sends until it is closed."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self._events: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self.following = asyncio.Event()
        self.stream_closed = False

    def emit(self, event: EngineEvent) -> None:
        self._events.put_nowait(event)

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        self._check()
        self.events_from.append(since_nanos)
        self.following.set()
        return self._stream()

    async def _stream(self) -> AsyncIterator[EngineEvent]:
        try:
            while True:
                yield await self._events.get()
        finally:
            self.stream_closed = True


class AgentGone(LiveRuntime):
    """An agent's engine whose event stream cannot be opened: the agent's stream went away."""

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        self.events_from.append(since_nanos)
        raise Unavailable(f"node {self.node} agent", "the agent went away")


def fleet(
    runtimes: list[FakeRuntime], uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> Containers:
    return Containers(runtimes, AuditTrail(uow, clock, bus), clock, bus, ContainerLimits())


async def eventually(check: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), 5)


def starts(bus: FakeEventBus, node: str) -> list[str]:
    return [e.name for e in bus.published if isinstance(e, ContainerStarted) and e.node == node]


async def test_an_engine_attached_while_watching_has_its_events_published(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    containers = fleet([LiveRuntime("a")], uow, clock, bus)
    stopping = asyncio.Event()
    watch = asyncio.create_task(containers.watch(stopping, first_retry=0.01, max_retry=0.02))
    await asyncio.sleep(0.01)
    agent = LiveRuntime("bee-001")

    containers.attach(agent, {"region": "eu"})
    await asyncio.wait_for(agent.following.wait(), 5)
    agent.emit(started("web"))
    await eventually(lambda: starts(bus, "bee-001") == ["web"])
    stopping.set()
    await asyncio.wait_for(watch, 5)

    assert agent.stream_closed
    assert any(isinstance(e, EngineAvailable) and e.node == "bee-001" for e in bus.published)
    [event] = [e for e in bus.published if isinstance(e, ContainerEvent) and e.node == "bee-001"]
    assert (event.container_id, event.name) == (ID, "web")


async def test_a_reconnected_agents_engine_is_followed_once(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    containers = fleet([], uow, clock, bus)
    stopping = asyncio.Event()
    watch = asyncio.create_task(containers.watch(stopping, first_retry=0.01, max_retry=0.02))
    await asyncio.sleep(0.01)
    before, after = LiveRuntime("bee-001"), LiveRuntime("bee-001")
    containers.attach(before, {})
    await asyncio.wait_for(before.following.wait(), 5)

    containers.attach(after, {})  # the agent reconnected: same node, a new stream
    await asyncio.wait_for(after.following.wait(), 5)
    for runtime in (before, after):  # the same engine, seen through both streams
        runtime.emit(started("web"))
    after.emit(started("api"))
    await eventually(lambda: "api" in starts(bus, "bee-001"))
    await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(watch, 5)

    assert starts(bus, "bee-001") == ["web", "api"]
    assert before.stream_closed
    assert containers.runtime("bee-001") is after


async def test_an_attached_engine_that_is_lost_is_marked_unavailable_and_fails_fast(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    containers = fleet([LiveRuntime("a")], uow, clock, bus)
    stopping = asyncio.Event()
    watch = asyncio.create_task(containers.watch(stopping, first_retry=0.01, max_retry=0.02))
    await asyncio.sleep(0.01)
    lost = AgentGone("bee-001")
    lost.held = [container("bee-001")]

    containers.attach(lost, {})
    await eventually(lambda: any(isinstance(e, EngineUnavailable) for e in bus.published))
    listed = lost.listed
    with pytest.raises(Unavailable, match="node bee-001 agent"):
        await containers.list_containers(node="bee-001")
    with pytest.raises(Unavailable, match="node bee-001 agent"):
        await containers.inspect("web", "bee-001")
    listing = await containers.list_containers()
    back = LiveRuntime("bee-001")
    back.held = [container("bee-001")]
    containers.attach(back, {})  # the agent reconnected
    after_reconnect = await containers.list_containers(node="bee-001")
    await eventually(
        lambda: any(isinstance(e, EngineAvailable) and e.node == "bee-001" for e in bus.published)
    )
    stopping.set()
    await asyncio.wait_for(watch, 5)

    [unavailable] = [e for e in bus.published if isinstance(e, EngineUnavailable)]
    assert unavailable.node == "bee-001"
    assert "the agent went away" in unavailable.detail
    assert lost.listed == listed  # known lost: not asked, no waiting on its deadline
    assert list(listing.unavailable) == ["bee-001"]
    assert [c.node for c in after_reconnect.items] == ["bee-001"]
    statuses = {status.node: status for status in containers.engines()}
    assert statuses["bee-001"].available is True


async def test_listings_say_when_each_agents_inventory_was_taken(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    taken = clock.now() - timedelta(seconds=12)
    fresh = FakeAgentRuntime(FakeAgentLink("bee-001"), taken)
    fresh.held = [container("bee-001")]
    never = FakeAgentRuntime(FakeAgentLink("bee-002"))
    lost = FakeAgentRuntime(FakeAgentLink("bee-003"), taken)
    lost.down = True
    direct = FakeRuntime("a", [container("a")])
    containers = fleet([direct, fresh, never, lost], uow, clock, bus)

    everywhere = await containers.list_containers()
    one = await containers.list_containers(node="bee-001")
    direct_only = await containers.list_containers(node="a")

    assert [c.node for c in everywhere.items] == ["a", "bee-001"]
    assert everywhere.as_of == {"bee-001": taken}
    assert list(everywhere.unavailable) == ["bee-003"]
    assert one.as_of == {"bee-001": taken}
    assert direct_only.as_of == {}
