"""The agents' service on several replicas, on fakes: replica A holds an agent's stream, records it in the
shared registry, and replica B reaches the agent through a relay to A — its node, its connection, sync and
shell — until the stream ends; a database that cannot record a stream delays the record, never the agent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.agent_registry import FakeAgentRegistry
from tests.fakes.agents import FakeAgentLink, FakeAgentRuntime
from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.agents.model import DOCKER, AgentHello, Connection, StreamHolder
from worpen_core.agents.ports import AgentLink, CommandStream
from worpen_core.agents.service import MOVED, SILENT, Agents, Replicas, dependency
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import NotFound, Unavailable


class InMemoryRelay:
    """B's link to an agent through replica A, as the gRPC relay is: each command goes to A's own link of
    that agent, if A still holds it."""

    def __init__(self, holder: StreamHolder, replicas: dict[str, Agents]) -> None:
        self.hello: AgentHello = holder.connection.hello
        self._holder = holder
        self._replicas = replicas
        self.closed: str | None = None

    @property
    def open(self) -> bool:
        return self.closed is None

    def _target(self) -> AgentLink:
        link = None if self.closed else self._replicas[self._holder.replica_id].local_link(self.hello.id)
        if link is None:
            raise Unavailable(dependency(self.hello.id), "the agent is not connected")
        return link

    async def call(
        self, kind: str, params: Mapping[str, Any], *, data: bytes = b"", timeout: float | None
    ) -> Any:
        return await self._target().call(kind, params, data=data, timeout=timeout)

    async def stream(self, kind: str, params: Mapping[str, Any], *, timeout: float) -> CommandStream:
        return await self._target().stream(kind, params, timeout=timeout)

    async def close(self, reason: str) -> None:
        self.closed = reason


@dataclass
class Replica:
    agents: Agents
    containers: Containers
    fleet: Fleet


@pytest.fixture
def registry() -> FakeAgentRegistry:
    return FakeAgentRegistry()


@pytest.fixture
def cluster(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus, registry: FakeAgentRegistry
) -> dict[str, Replica]:
    """Replicas a and b on one (fake) database and registry."""
    services: dict[str, Agents] = {}
    cluster: dict[str, Replica] = {}
    for name in ("a", "b"):
        audit = AuditTrail(uow, clock, bus)
        containers = Containers([FakeRuntime(f"engine-{name}")], audit, clock, bus, ContainerLimits())
        fleet = Fleet(uow, bus, clock, FleetPolicy())
        replicas = Replicas(
            registry,
            name,
            f"{name}.internal:3001",
            relay=lambda holder: InMemoryRelay(holder, services),
            runtime_for=FakeAgentRuntime,
        )
        agents = Agents(containers, fleet, clock, FakeAgentRuntime, command_timeout=5, replicas=replicas)
        services[name] = agents
        cluster[name] = Replica(agents, containers, fleet)
    return cluster


async def test_an_agent_connected_to_a_is_commanded_from_b(
    cluster: dict[str, Replica], registry: FakeAgentRegistry
) -> None:
    a, b = cluster["a"], cluster["b"]
    link = FakeAgentLink("bee-001", {DOCKER}, {"region": "eu"})
    link.answers["engine.info"] = {"version": {}, "info": {}}

    await a.agents.attach(link, "10.0.0.7:40001")
    await b.agents.refresh()

    row = registry.rows["bee-001"]
    assert (row.replica_id, row.address) == ("a", "a.internal:3001")
    connection = b.agents.connection("bee-001")
    assert connection == a.agents.connection("bee-001"), "B shows A's connection: peer, time, hello"
    assert b.containers.labels("bee-001") == {"region": "eu"}
    runtime = b.containers.runtime("bee-001")
    assert isinstance(runtime, FakeAgentRuntime)
    assert await runtime.link.call("engine.info", {}, timeout=1) == {"version": {}, "info": {}}
    assert link.calls[-1][0] == "engine.info", "the command ran on A's stream"
    assert b.agents.connections() == [], "B holds no stream itself"


async def test_sync_on_b_reaches_agents_held_by_a_and_by_b(cluster: dict[str, Replica]) -> None:
    a, b = cluster["a"], cluster["b"]
    on_a, on_b = FakeAgentLink("bee-001"), FakeAgentLink("bee-002")
    await a.agents.attach(on_a, "peer-1")
    await b.agents.attach(on_b, "peer-2")
    await b.agents.refresh()

    report = await b.agents.sync(None, timeout=1)

    assert (report.agents, report.acknowledged, report.missing) == (2, 2, ())
    assert [kind for kind, _, _ in on_a.calls] == ["sync"]
    assert [kind for kind, _, _ in on_b.calls] == ["sync"]


async def test_b_looks_an_agent_up_in_the_registry_before_its_refresh_learnt_of_it(
    cluster: dict[str, Replica],
) -> None:
    a, b = cluster["a"], cluster["b"]
    link = FakeAgentLink("bee-001")
    await a.agents.attach(link, "peer-1")

    report = await b.agents.sync("bee-001", timeout=1)

    assert (report.agents, report.acknowledged) == (1, 1)
    assert b.agents.connection("bee-001") is not None


async def test_once_the_stream_ends_on_a_b_forgets_the_agent_and_its_commands_answer_503(
    cluster: dict[str, Replica], registry: FakeAgentRegistry
) -> None:
    a, b = cluster["a"], cluster["b"]
    link = FakeAgentLink("bee-001", {DOCKER})
    await a.agents.attach(link, "peer-1")
    await b.agents.refresh()
    runtime = b.containers.runtime("bee-001")
    assert isinstance(runtime, FakeAgentRuntime)

    link.disconnect()
    a.agents.detach(link)
    await a.agents.refresh()
    await b.agents.refresh()

    assert registry.rows == {}
    assert b.agents.connection("bee-001") is None
    with pytest.raises(Unavailable) as gone:
        await runtime.link.call("engine.info", {}, timeout=1)
    assert "bee-001" in gone.value.detail
    with pytest.raises(NotFound):
        await b.agents.sync("bee-001", timeout=1)  # never heard from: unknown to the fleet


async def test_an_agent_that_moves_to_b_is_held_by_b_and_the_end_of_its_old_stream_leaves_it(
    cluster: dict[str, Replica], registry: FakeAgentRegistry, clock: FakeClock
) -> None:
    a, b = cluster["a"], cluster["b"]
    old, new = FakeAgentLink("bee-001", {DOCKER}), FakeAgentLink("bee-001", {DOCKER})
    await a.agents.attach(old, "peer-1")
    await b.agents.refresh()
    relayed = b.containers.runtime("bee-001")
    assert isinstance(relayed, FakeAgentRuntime)

    clock.advance(3)
    await b.agents.attach(new, "peer-2")
    old.disconnect()
    a.agents.detach(old)
    await a.agents.refresh()

    assert registry.rows["bee-001"].replica_id == "b"
    assert isinstance(relayed.link, InMemoryRelay)
    assert relayed.link.closed == MOVED
    on_b = b.containers.runtime("bee-001")
    assert isinstance(on_b, FakeAgentRuntime)
    assert on_b.link is new
    on_a = a.containers.runtime("bee-001")
    assert isinstance(on_a, FakeAgentRuntime)
    await on_a.link.call("ping", {}, timeout=1)
    assert new.calls[-1][0] == "ping", "A now relays to B"


async def test_a_stream_attached_while_the_database_is_down_serves_at_once_and_is_recorded_later(
    cluster: dict[str, Replica], registry: FakeAgentRegistry
) -> None:
    a = cluster["a"]
    registry.broken = True
    link = FakeAgentLink("bee-001")

    await a.agents.attach(link, "peer-1")
    assert a.agents.local_link("bee-001") is link
    with pytest.raises(Unavailable):
        await a.agents.refresh()

    registry.broken = False
    await a.agents.refresh()
    assert registry.rows["bee-001"].replica_id == "a"


async def test_a_replica_that_stops_cleanly_leaves_no_row(
    cluster: dict[str, Replica], registry: FakeAgentRegistry
) -> None:
    a, b = cluster["a"], cluster["b"]
    await a.agents.attach(FakeAgentLink("bee-001"), "peer-1")
    await b.agents.attach(FakeAgentLink("bee-002"), "peer-2")

    await a.agents.leave()

    assert list(registry.rows) == ["bee-002"]


async def test_a_stream_whose_agent_the_leader_marked_offline_is_closed_by_its_holder(
    cluster: dict[str, Replica], registry: FakeAgentRegistry, clock: FakeClock
) -> None:
    a = cluster["a"]
    silent, back = FakeAgentLink("bee-001"), FakeAgentLink("bee-001")
    await a.agents.attach(silent, "peer-1")
    clock.advance(1)
    await a.fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10, 20)))
    clock.advance(FleetPolicy().offline_after.total_seconds() + 1)
    await a.fleet.sweep()  # as the leader's sweep, taken in by this replica's fleet: no event reaches it

    await a.agents.refresh()

    assert silent.close_reason == SILENT
    assert a.agents.local_link("bee-001") is None
    await a.agents.attach(back, "peer-2")  # the agent came back, before its first heartbeat
    await a.agents.refresh()
    assert back.open
    assert registry.rows["bee-001"].connection.peer == "peer-2"


async def test_the_row_of_an_agent_gone_offline_with_its_replica_is_forgotten_by_the_others(
    cluster: dict[str, Replica], registry: FakeAgentRegistry, clock: FakeClock
) -> None:
    b = cluster["b"]
    greeting = AgentHello("bee-001", "1.0.0", 1, frozenset({DOCKER}), {})
    dead = StreamHolder(Connection(greeting, "peer-1", clock.now()), "c", "c.internal:3001")
    await registry.record(dead)  # replica c died (kill -9) holding the stream, and the agent with it
    clock.advance(1)
    await b.fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10, 20)))
    await b.agents.refresh()
    assert b.agents.connection("bee-001") is not None

    clock.advance(FleetPolicy().offline_after.total_seconds() + 1)
    await b.fleet.sweep()
    await b.agents.refresh()

    assert b.agents.connection("bee-001") is None
    assert registry.rows == {}


async def test_a_holder_records_again_a_row_another_replica_forgot(
    cluster: dict[str, Replica], registry: FakeAgentRegistry
) -> None:
    a, b = cluster["a"], cluster["b"]
    await a.agents.attach(FakeAgentLink("bee-001"), "peer-1")
    row = registry.rows["bee-001"]
    await registry.forget(row)  # b could not reach a for a moment, and took a for dead

    await a.agents.refresh()
    await b.agents.refresh()

    assert registry.rows["bee-001"] == row
    assert b.agents.connection("bee-001") == row.connection


async def test_a_stream_whose_agent_was_heard_within_the_ttl_stays_open_whatever_status_it_reads(
    cluster: dict[str, Replica], clock: FakeClock
) -> None:
    """The leader's sweep went by what it knew (the heartbeats replica a took in since were not stored yet)
    and stored OFFLINE; a takes that status in, but its own last heartbeat is recent: the stream is alive,
    and the agent's next heartbeat brings it back."""
    a, b = cluster["a"], cluster["b"]
    ttl = FleetPolicy().offline_after.total_seconds()
    talking = FakeAgentLink("bee-001")
    await a.agents.attach(talking, "peer-1")
    await a.fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10, 20)))
    await b.fleet.refresh()
    clock.advance(ttl - 1)
    await a.fleet.record_heartbeat(RecordHeartbeat("bee-001", Readings(10, 20)))
    clock.advance(2)
    await b.fleet.sweep()
    await a.fleet.refresh()
    assert a.fleet.get("bee-001").status is AgentStatus.OFFLINE

    await a.agents.refresh()

    assert talking.open
    assert a.agents.local_link("bee-001") is talking
