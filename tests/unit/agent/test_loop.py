"""The agent's loop against a real gRPC server on loopback (scripted) and a stand-in engine: what the server
receives, in which order, across lost connections and refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from tests.unit.agent.stand_ins import ScriptedServer, StandInEngine, container_event, serve
from worpen_agent.config import AgentConfig
from worpen_agent.metrics import Metrics
from worpen_agent.supervisor import Supervisor
from worpen_proto.v1 import agent_pb2, fleet_pb2

KEY = "wpn_secret_of_bee"


@asynccontextmanager
async def running(
    server: ScriptedServer, port: int, **settings: object
) -> AsyncIterator[tuple[Supervisor, StandInEngine]]:
    config = AgentConfig(
        server=f"127.0.0.1:{port}",
        agent_id="bee-001",
        key=KEY,
        backoff_max=0.2,
        **settings,  # type: ignore[arg-type]
    )
    engine = StandInEngine()
    supervisor = Supervisor(config, engine, Metrics(config.agent_id, "test"))
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        yield supervisor, engine
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedServer, int]]:
    servicer = ScriptedServer()
    server, port = await serve(servicer)
    yield servicer, port
    await server.stop(grace=None)


def command(command_id: str, kind: str) -> agent_pb2.ControlMessage:
    return agent_pb2.ControlMessage(command=agent_pb2.Command(id=command_id, kind=kind, params_json=b"{}"))


def results(server: ScriptedServer) -> dict[str, agent_pb2.CommandResult]:
    return {m.result.id: m.result for m in server.of("result")}


async def test_the_agent_says_hello_with_its_key_and_reports_at_once(
    scripted: tuple[ScriptedServer, int],
) -> None:
    server, port = scripted
    async with running(server, port, labels={"region": "eu"}, allow_shell=True):
        await server.wait_for(lambda: bool(server.of("heartbeat")) and bool(server.of("inventory")))

    stream = server.streams[0]
    assert stream.metadata["authorization"] == f"Bearer {KEY}"
    assert stream.metadata["worpen-agent-id"] == "bee-001"
    assert stream.hello.id == "bee-001"
    assert stream.hello.protocol == 1
    assert list(stream.hello.capabilities) == ["docker", "shell"]
    assert dict(stream.hello.labels) == {"region": "eu"}
    beat = server.of("heartbeat")[0].heartbeat
    assert beat.beat.id == "bee-001"
    assert beat.beat.status == 1
    assert beat.measured_at_ms == pytest.approx(time.time() * 1000, abs=10_000)


async def test_without_allow_shell_the_agent_offers_docker_only(scripted: tuple[ScriptedServer, int]) -> None:
    server, port = scripted
    async with running(server, port):
        await server.wait_for(lambda: bool(server.streams))
    assert list(server.streams[0].hello.capabilities) == ["docker"]


async def test_the_server_sets_the_pace_of_heartbeats(scripted: tuple[ScriptedServer, int]) -> None:
    server, port = scripted
    server.heartbeat_seconds = 60
    async with running(server, port):
        await server.wait_for(lambda: bool(server.of("inventory")))
        await asyncio.sleep(1.5)
        beats = len(server.of("heartbeat"))
        await asyncio.sleep(1.5)
        assert len(server.of("heartbeat")) == beats
        await server.send(agent_pb2.ControlMessage(pace=fleet_pb2.HeartbeatAck(next_heartbeat_seconds=1)))
        await server.wait_for(lambda: len(server.of("heartbeat")) >= beats + 2, seconds=3.5)


async def test_ping_sync_and_engine_commands_are_answered(scripted: tuple[ScriptedServer, int]) -> None:
    server, port = scripted
    server.heartbeat_seconds = 60
    async with running(server, port) as (_, engine):
        await server.wait_for(lambda: bool(server.of("inventory")))
        before = len(server.received)
        await server.send(command("p1", "ping"))
        await server.send(command("s1", "sync"))
        await server.send(command("c1", "containers.start"))
        await server.send(agent_pb2.ControlMessage(cancel=agent_pb2.Cancel(id="c9")))
        await server.send(agent_pb2.ControlMessage(ping=agent_pb2.Ping(sent_at_ms=1)))
        await server.wait_for(lambda: {"p1", "s1", "c1"} <= results(server).keys())
        await server.wait_for(lambda: engine.cancelled == ["c9"])

    answered = results(server)
    assert answered["p1"].ok
    assert json.loads(answered["p1"].result_json) == {}
    assert answered["s1"].ok
    assert json.loads(answered["s1"].result_json) == {}
    assert json.loads(answered["c1"].result_json) == {"kind": "containers.start"}
    after = [m.WhichOneof("body") for m in server.received[before:]]
    sync_done = next(i for i, m in enumerate(server.received[before:]) if m.result.id == "s1")
    assert "inventory" in after[:sync_done]
    assert "heartbeat" in after[:sync_done]


async def test_what_was_produced_while_disconnected_arrives_in_order_after_reconnecting(
    scripted: tuple[ScriptedServer, int],
) -> None:
    server, port = scripted
    async with running(server, port) as (_, engine):
        await server.wait_for(lambda: bool(server.of("heartbeat")))
        server.refusal = (grpc.StatusCode.UNAVAILABLE, "down for maintenance")
        await server.end_stream()
        # Produced once the agent knows it is disconnected (a refused reconnection shows it): a message
        # written into a stream as the server ends it is lost with that stream, as on any stream.
        await server.wait_for(lambda: len(server.streams) >= 2)
        cut = time.time() * 1000
        for n in range(1, 4):
            await engine.event_queue.put(container_event("start", n))
        await asyncio.sleep(2.5)
        server.refusal = None
        back = time.time() * 1000
        await server.wait_for(lambda: len(server.of("engine_event")) == 3)
        await server.wait_for(lambda: any(m.heartbeat.measured_at_ms > back for m in server.of("heartbeat")))

    measured = [m.heartbeat.measured_at_ms for m in server.of("heartbeat")]
    assert measured == sorted(measured)
    assert len([t for t in measured if cut < t < back]) >= 2
    actors = [json.loads(m.engine_event.event_json)["Actor"]["ID"] for m in server.of("engine_event")]
    assert actors == ["c1", "c2", "c3"]


async def test_a_full_buffer_drops_the_oldest_and_says_how_many(
    scripted: tuple[ScriptedServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worpen_agent")
    server, port = scripted
    server.heartbeat_seconds = 60
    async with running(server, port, buffer=3) as (_, engine):
        await server.wait_for(lambda: bool(server.of("heartbeat")))
        server.refusal = (grpc.StatusCode.UNAVAILABLE, "down")
        await server.end_stream()
        await server.wait_for(lambda: len(server.streams) >= 2)
        for n in range(1, 7):
            await engine.event_queue.put(container_event("die", n))
        await asyncio.sleep(0.3)
        server.refusal = None
        await server.wait_for(lambda: len(server.of("engine_event")) == 2)
        await asyncio.sleep(0.3)

    # The heartbeat taken on Welcome is the newest of the backlog: it leaves room for two events.
    actors = [json.loads(m.engine_event.event_json)["Actor"]["ID"] for m in server.of("engine_event")]
    assert actors == ["c5", "c6"]
    assert "4 heartbeats or events were dropped while disconnected (buffer of 3)" in caplog.text


async def test_a_refused_key_is_logged_and_retried_until_the_server_accepts_it(
    scripted: tuple[ScriptedServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worpen_agent")
    server, port = scripted
    server.refusal = (grpc.StatusCode.PERMISSION_DENIED, "this key reports for bee-002 only")
    async with running(server, port):
        await server.wait_for(lambda: len(server.streams) >= 3)
        assert not server.received
        server.refusal = None
        await server.wait_for(lambda: bool(server.of("heartbeat")))
    assert "refused by the server (PERMISSION_DENIED): this key reports for bee-002 only" in caplog.text
    assert KEY not in caplog.text


async def test_a_protocol_the_server_does_not_speak_is_logged_and_retried(
    scripted: tuple[ScriptedServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worpen_agent")
    server, port = scripted
    async with running(server, port, protocol=2):
        await server.wait_for(lambda: len(server.streams) >= 2)
    assert server.streams[0].hello.protocol == 2
    assert "refused by the server (FAILED_PRECONDITION): protocol 2 is not supported" in caplog.text
    assert not server.received


async def test_stopping_closes_the_stream_and_the_engine(scripted: tuple[ScriptedServer, int]) -> None:
    server, port = scripted
    async with running(server, port) as (_, engine):
        await server.wait_for(lambda: bool(server.of("heartbeat")))
    assert engine.closed


async def test_what_the_server_did_not_acknowledge_is_sent_again_on_the_next_stream(
    scripted: tuple[ScriptedServer, int],
) -> None:
    """A server that acknowledges: the events written into a stream that ended before their Received come
    again, first, on the next stream of the same session; those acknowledged do not."""
    server, port = scripted
    server.heartbeat_seconds = 60
    server.acknowledges = True
    async with running(server, port) as (supervisor, engine):
        await server.wait_for(lambda: bool(server.of("heartbeat")))
        beat = server.of("heartbeat")[0]
        await server.send(agent_pb2.ControlMessage(received=agent_pb2.Received(seq=beat.seq)))
        for n in range(1, 4):
            await engine.event_queue.put(container_event("start", n))
        await server.wait_for(lambda: len(server.of("engine_event")) == 3)
        events = server.of("engine_event")
        await server.send(agent_pb2.ControlMessage(received=agent_pb2.Received(seq=events[0].seq)))
        await server.wait_for(lambda: len(supervisor.outbox) == 2)  # c2 and c3, until acknowledged
        await server.end_stream()
        await server.wait_for(lambda: len(server.streams) >= 2 and len(server.streams[1].received) >= 3)

    first, second = server.streams[0], server.streams[1]
    assert second.hello.session == first.hello.session != ""
    again = [m for m in second.received if m.WhichOneof("body") == "engine_event"]
    assert [m.seq for m in again][:2] == [events[1].seq, events[2].seq]
    actors = [json.loads(m.engine_event.event_json)["Actor"]["ID"] for m in again]
    assert actors[:2] == ["c2", "c3"]
    numbered = [m for m in second.received if m.seq]
    assert numbered[:2] == again[:2], "sent before anything newer"
    assert all(m.seq > beat.seq for m in numbered), "the acknowledged heartbeat is not sent again"
