"""The replicas' relay (relay.proto) over a real gRPC server on loopback: a RelayedAgentLink on the asking
side raises what the holder's own link raised — the result, the agent's refusal, its timeout, 503 naming
the agent when the holder does not hold it — streams output and input both ways, refuses a caller without
the replicas' bearer, and forgets a holder whose address refuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from tests.fakes.agent_registry import FakeAgentRegistry
from tests.fakes.agents import FakeAgentLink, agent_world
from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from tests.integration.support import free_port
from worpen_api.grpc.relay import AgentRelayServicer, RelayClient, relay_token
from worpen_core.agents.model import SHELL, CommandRefused, StreamHolder
from worpen_core.agents.service import Agents
from worpen_core.shared.errors import TimedOut, Unavailable
from worpen_proto.v1 import relay_pb2_grpc

pytestmark = pytest.mark.integration

KEY = b"7jZ_-4eGfafKgCDztCju-F1waX6xIlkAqbmm5mQR98E="


@dataclass
class Holder:
    agents: Agents
    address: str
    registry: FakeAgentRegistry


@pytest.fixture
async def holder() -> AsyncIterator[Holder]:
    """Replica "a": its agents (on fakes) served by the relay on a real gRPC server."""
    world = agent_world(FakeUnitOfWorkFactory(), FakeClock(), FakeEventBus())
    server = grpc.aio.server()
    relay_pb2_grpc.add_AgentRelayServicer_to_server(
        AgentRelayServicer(world.agents, relay_token(KEY), "a"), server
    )
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    try:
        yield Holder(world.agents, address, FakeAgentRegistry())
    finally:
        await server.stop(None)


async def relayed(holder: Holder, link: FakeAgentLink, key: bytes = KEY) -> tuple[StreamHolder, RelayClient]:
    await holder.agents.attach(link, "10.0.0.7:40001")
    connection = holder.agents.connection(link.hello.id)
    assert connection is not None
    row = StreamHolder(connection, "a", holder.address)
    await holder.registry.record(row)
    return row, RelayClient(relay_token(key), holder.registry)


async def test_a_relayed_call_answers_as_the_holders_own_link(holder: Holder) -> None:
    link = FakeAgentLink("bee-001")
    link.answers["containers.inspect"] = {"Id": "c0ffee", "State": {"Running": True}}
    link.refusals["containers.stop"] = CommandRefused("not_found", "no such container: web")
    link.delays["containers.wait"] = 5
    row, client = await relayed(holder, link)
    remote = client.link(row)
    try:
        answer = await remote.call("containers.inspect", {"ref": "web"}, timeout=2)
        assert answer == {"Id": "c0ffee", "State": {"Running": True}}
        assert link.calls[-1][:2] == ("containers.inspect", {"ref": "web"})

        with pytest.raises(CommandRefused) as refused:
            await remote.call("containers.stop", {"ref": "web"}, timeout=2)
        assert (refused.value.code, refused.value.message) == ("not_found", "no such container: web")

        with pytest.raises(TimedOut):
            await remote.call("containers.wait", {"ref": "web"}, timeout=0.2)

        await holder.agents.attach(FakeAgentLink("bee-002"), "peer")
        holder.agents.detach(link)
        with pytest.raises(Unavailable) as gone:
            await remote.call("ping", {}, timeout=2)
        assert gone.value.dependency == "node bee-001 agent"
    finally:
        await client.close()


async def test_a_command_with_more_data_than_one_message_takes_arrives_whole(holder: Holder) -> None:
    link = FakeAgentLink("bee-001")
    row, client = await relayed(holder, link)
    archive = bytes(range(256)) * (9 * 4096)  # 9 MiB: a pipeline's source archive, past gRPC's 4 MiB
    try:
        await client.link(row).call(
            "containers.archive", {"ref": "web", "path": "/src"}, data=archive, timeout=10
        )
        kind, params, data = link.calls[-1]
        assert (kind, params) == ("containers.archive", {"ref": "web", "path": "/src"})
        assert data == archive
    finally:
        await client.close()


async def test_a_relayed_stream_carries_output_and_input_and_its_end(holder: Holder) -> None:
    link = FakeAgentLink("bee-001", {SHELL})
    row, client = await relayed(holder, link)
    try:
        stream = await client.link(row).stream("shell.open", {"command": ["/bin/sh"]}, timeout=2)
        agent_side = link.streams[-1]
        agent_side.feed(b"$ ", [(1, b"2026-12-01T08:00:00Z hello")])
        assert await stream.next() == b"$ "
        assert await stream.next() == [(1, b"2026-12-01T08:00:00Z hello")]
        await stream.write(b"exit\n")
        async with asyncio.timeout(5):
            while agent_side.written != [b"exit\n"]:
                await asyncio.sleep(0.01)
        agent_side.finish({"exitCode": 0})
        assert await stream.next() is None
        assert stream.result() == {"exitCode": 0}
    finally:
        await client.close()


async def test_leaving_a_relayed_stream_cancels_the_command_on_the_holder(holder: Holder) -> None:
    link = FakeAgentLink("bee-001")
    row, client = await relayed(holder, link)
    try:
        stream = await client.link(row).stream("containers.logs", {"ref": "web", "follow": True}, timeout=2)
        await stream.close()
        async with asyncio.timeout(5):
            while not link.streams[-1].closed:
                await asyncio.sleep(0.01)
    finally:
        await client.close()


async def test_a_caller_without_the_replicas_bearer_is_refused(holder: Holder) -> None:
    row, client = await relayed(holder, FakeAgentLink("bee-001"), key=b"another installation's key")
    try:
        with pytest.raises(Unavailable, match="refused the relay"):
            await client.link(row).call("ping", {}, timeout=2)
        assert await holder.registry.holder("bee-001") == row, "a refusal is no sign of a dead replica"
    finally:
        await client.close()


async def test_a_holder_whose_address_refuses_is_forgotten(holder: Holder) -> None:
    row, client = await relayed(holder, FakeAgentLink("bee-001"))
    dead = StreamHolder(row.connection, "a", f"127.0.0.1:{free_port()}")
    await holder.registry.record(dead)
    try:
        with pytest.raises(Unavailable, match="cannot be reached") as unreachable:
            await client.link(dead).call("ping", {}, timeout=2)
        assert unreachable.value.dependency == "node bee-001 agent"
        assert await holder.registry.holder("bee-001") is None
    finally:
        await client.close()
