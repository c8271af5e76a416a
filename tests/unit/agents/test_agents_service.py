"""The agents' service on fake links: one stream per agent, their engines as container nodes, SYNC."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.fakes.agents import ENGINE, FakeAgentLink, FakeAgentRuntime, agent_world
from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.agents.model import DOCKER, CommandRefused, SyncReport
from worpen_core.agents.service import REPLACED, SILENT
from worpen_core.containers.model import Container, ContainerState
from worpen_core.shared.errors import Conflict, NotFound


def web(node: str) -> Container:
    return Container(
        "c0ffee" + "0" * 58,
        "web",
        "img:1",
        ContainerState.RUNNING,
        "Up",
        node,
        datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_a_second_connection_of_an_agent_replaces_the_first_which_is_closed_with_why(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    first, second = FakeAgentLink("bee-001", {DOCKER}), FakeAgentLink("bee-001", {DOCKER})

    await world.agents.attach(first, "10.0.0.7:40001")
    clock.advance(5)
    await world.agents.attach(second, "10.0.0.7:40002")

    assert first.close_reason == REPLACED
    assert not first.open
    assert second.open
    connection = world.agents.connection("bee-001")
    assert connection is not None
    assert (connection.peer, connection.connected_at) == ("10.0.0.7:40002", clock.now())
    runtime = world.containers.runtime("bee-001")
    assert isinstance(runtime, FakeAgentRuntime)
    assert runtime.link is second


async def test_the_end_of_a_replaced_stream_leaves_the_newer_one_connected(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    first, second = FakeAgentLink("bee-001"), FakeAgentLink("bee-001")
    await world.agents.attach(first, "peer-1")
    await world.agents.attach(second, "peer-2")

    world.agents.detach(first)

    assert [c.peer for c in world.agents.connections()] == ["peer-2"]
    world.agents.detach(second)
    assert world.agents.connections() == []
    assert world.agents.connection("bee-001") is None
    assert world.agents.hello("bee-001") is None


async def test_an_agent_cannot_take_the_name_of_a_configured_engine(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    impostor = FakeAgentLink(ENGINE, {DOCKER})

    with pytest.raises(Conflict, match="WORPEN_DOCKER_HOSTS"):
        await world.agents.attach(impostor, "10.0.0.9:40000")

    assert world.agents.connection(ENGINE) is None
    assert world.containers.runtime(ENGINE) is world.engine
    [status] = world.containers.engines()
    assert not status.via_agent


async def test_an_agent_serving_docker_becomes_a_container_node_with_its_labels(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    world.engine.held = [web(ENGINE)]
    link = FakeAgentLink("bee-001", {DOCKER}, {"region": "eu", "gpu": "false"})

    await world.agents.attach(link, "10.0.0.7:40001")
    runtime = world.containers.runtime("bee-001")
    assert isinstance(runtime, FakeAgentRuntime)
    runtime.held = [web("bee-001")]

    by_node = {status.node: status for status in world.containers.engines()}
    assert set(by_node) == {ENGINE, "bee-001"}
    assert by_node["bee-001"].via_agent
    assert by_node["bee-001"].labels == {"region": "eu", "gpu": "false"}
    assert not by_node[ENGINE].via_agent
    assert world.containers.labels("bee-001") == {"region": "eu", "gpu": "false"}
    assert world.containers.labels(ENGINE) == {}
    listing = await world.containers.list_containers()
    assert [(c.node, c.name) for c in listing.items] == [("bee-001", "web"), (ENGINE, "web")]
    assert (await world.containers.inspect("web", "bee-001")).container.node == "bee-001"


async def test_an_agent_without_the_docker_capability_is_no_container_node(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)

    await world.agents.attach(FakeAgentLink("bee-001", labels={"region": "eu"}), "10.0.0.7:40001")

    assert world.agents.connection("bee-001") is not None
    with pytest.raises(NotFound):
        world.containers.runtime("bee-001")
    assert [status.node for status in world.containers.engines()] == [ENGINE]
    assert world.containers.labels("bee-001") == {}


async def test_sync_asks_every_connected_agent_and_names_those_that_did_not_acknowledge(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    quick, slow, refusing, gone = (FakeAgentLink(f"bee-00{n}") for n in range(1, 5))
    slow.delays["sync"] = 30
    refusing.refusals["sync"] = CommandRefused("internal", "the inventory could not be read")
    for link in (quick, slow, refusing, gone):
        await world.agents.attach(link, "peer")
    gone.disconnect()  # its stream went away; the server has not noticed yet

    loop = asyncio.get_running_loop()
    began = loop.time()
    report = await world.agents.sync(None, timeout=0.1)

    assert loop.time() - began < 5  # the slow agent holds nobody past the deadline
    assert report == SyncReport(agents=4, acknowledged=1, missing=("bee-002", "bee-003", "bee-004"))
    assert [[kind for kind, _, _ in link.calls] for link in (quick, slow, refusing)] == [["sync"]] * 3


async def test_sync_of_one_agent_asks_it_alone(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    target, other = FakeAgentLink("bee-001"), FakeAgentLink("bee-002")
    await world.agents.attach(target, "peer")
    await world.agents.attach(other, "peer")

    report = await world.agents.sync("bee-001", timeout=1)

    assert report == SyncReport(agents=1, acknowledged=1, missing=())
    assert [kind for kind, _, _ in target.calls] == ["sync"]
    assert other.calls == []


async def test_sync_of_a_known_agent_that_is_not_connected_reports_it_missing(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    await world.heard_from("bee-009")

    assert await world.agents.sync("bee-009", timeout=1) == SyncReport(
        agents=1, acknowledged=0, missing=("bee-009",)
    )
    with pytest.raises(NotFound):
        await world.agents.sync("bee-404", timeout=1)


async def test_sync_with_no_agent_connected_asks_none(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)

    assert await world.agents.sync(None, timeout=1) == SyncReport(agents=0, acknowledged=0, missing=())


async def test_an_agent_that_goes_offline_loses_its_stream_and_commands_to_it_fail_at_once(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    world = agent_world(uow, clock, bus)
    bus.subscribe(world.agents.observe)
    silent, talking = FakeAgentLink("bee-001", {DOCKER}), FakeAgentLink("bee-002", {DOCKER})
    for link in (silent, talking):
        await world.agents.attach(link, "peer")
        await world.heard_from(link.hello.id)

    clock.advance(world.fleet.policy.offline_after.total_seconds() / 2)
    await world.heard_from("bee-002")
    clock.advance(world.fleet.policy.offline_after.total_seconds() / 2 + 1)
    await world.fleet.sweep()

    assert silent.close_reason == SILENT
    assert world.agents.connection("bee-001") is None
    assert talking.open
    assert await world.agents.sync(None, timeout=1) == SyncReport(agents=1, acknowledged=1, missing=())
    assert await world.agents.sync("bee-001", timeout=1) == SyncReport(
        agents=1, acknowledged=0, missing=("bee-001",)
    )


async def test_a_stream_opened_after_the_agent_fell_silent_is_not_closed_by_that_silence(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    """A restarted server: the agent's last heartbeat is older than the TTL when it reconnects. Its first
    heartbeat on the new stream finds it overdue (AgentWentOffline, then AgentRecovered), and the sweep
    may find the same before that heartbeat is taken in: neither is news about the new stream."""
    world = agent_world(uow, clock, bus)
    bus.subscribe(world.agents.observe)
    await world.heard_from("bee-001")
    clock.advance(world.fleet.policy.offline_after.total_seconds() + 2)
    back = FakeAgentLink("bee-001", {DOCKER})
    await world.agents.attach(back, "peer")

    await world.heard_from("bee-001")
    await world.fleet.sweep()

    assert [type(event).__name__ for event in bus.published[-2:]] == ["AgentWentOffline", "AgentRecovered"]
    assert back.open

    other = FakeAgentLink("bee-002", {DOCKER})
    await world.heard_from("bee-002")
    clock.advance(world.fleet.policy.offline_after.total_seconds() + 2)
    await world.agents.attach(other, "peer")
    await world.fleet.sweep()  # before the new stream's first heartbeat

    assert other.open
    assert world.agents.connection("bee-002") is not None
