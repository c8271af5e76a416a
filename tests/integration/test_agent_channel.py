"""The agents' command channel (AgentChannel.Connect) against real `worpen serve` processes, driven by a
scripted agent written here with the generated stub over grpc.aio: the negotiation and its refusals, one
stream per agent, heartbeats over the stream, commands answered with the real engine's JSON, and TLS."""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import grpc
import httpx
import pytest

from tests.integration.docker_support import SESSION, SESSION_LABEL, Containers, engine
from tests.integration.support import WorpenServer, bearer, launch_server, writes_blocked
from tests.tls_support import self_signed
from worpen_proto.v1 import agent_pb2, agent_pb2_grpc, fleet_pb2

pytestmark = pytest.mark.integration

ANSWER_SECONDS = 30.0
"""Upper bound for the server to answer the scripted agent; never reached when things work."""
COMMAND_TIMEOUT = 2
"""WORPEN_AGENT_COMMAND_TIMEOUT of the channel's server: a command unanswered this long is a 504."""


@dataclass(frozen=True)
class ChannelServers:
    plain: WorpenServer
    tls: WorpenServer
    tls_cert: bytes


@pytest.fixture(scope="module")
def channel_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChannelServers]:
    """Two servers of this module's own, started side by side (an agent node is a container node of its
    server, which the shared servers' container lists should not see): one in plain text whose commands
    time out after COMMAND_TIMEOUT s, and one that serves gRPC over TLS only."""
    root = tmp_path_factory.mktemp("channel")
    cert, key = self_signed()
    (root / "cert.pem").write_bytes(cert)
    (root / "key.pem").write_bytes(key)
    common = {"WORPEN_DOCKER_HOSTS": "none", "WORPEN_AGENT_TTL": "3600"}
    plain = launch_server(
        root / "plain" / "worpen.db",
        # A locked PostgreSQL fails a write within 5 s, as a locked SQLite does (its busy timeout).
        {
            **common,
            "WORPEN_AGENT_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT),
            "WORPEN_DATABASE_STATEMENT_TIMEOUT": "5",
        },
    )
    secure = launch_server(
        root / "tls" / "worpen.db",
        {
            **common,
            "WORPEN_GRPC_TLS_CERT": str(root / "cert.pem"),
            "WORPEN_GRPC_TLS_KEY": str(root / "key.pem"),
        },
    )
    try:
        plain.wait_until_healthy()
        secure.wait_until_healthy()
        yield ChannelServers(plain, secure, cert)
    finally:
        plain.stop()
        secure.stop()


@pytest.fixture(scope="module")
def server(channel_servers: ChannelServers) -> WorpenServer:
    return channel_servers.plain


@dataclass(frozen=True)
class ChannelKeys:
    admin: str
    bee_001: str
    """An agent key bound to bee-001 only."""


def agent_key(server: WorpenServer, admin: str, agent_id: str) -> str:
    with server.client(admin) as client:
        answer = client.post(
            "/api/v1/apikeys", json={"name": f"agent {agent_id}", "role": "agent", "agents": [agent_id]}
        )
    assert answer.status_code == 201, answer.text
    secret: str = answer.json()["key"]
    return secret


@pytest.fixture(scope="module")
def keys(server: WorpenServer) -> ChannelKeys:
    admin = server.initial_admin_key()
    return ChannelKeys(admin=admin, bee_001=agent_key(server, admin, "bee-001"))


@pytest.fixture
async def http(server: WorpenServer, keys: ChannelKeys) -> AsyncIterator[httpx.AsyncClient]:
    """The admin's client: async, so the scripted agent answers while a request waits for it."""
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(keys.admin), timeout=60) as client:
        yield client


class ScriptedAgent:
    """One AgentChannel.Connect stream, written message by message by a test."""

    def __init__(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]]) -> None:
        self._outbox: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        stub = agent_pb2_grpc.AgentChannelStub(channel)
        self.call = stub.Connect(self._requests(), metadata=tuple(metadata))

    async def _requests(self) -> AsyncIterator[agent_pb2.AgentMessage]:
        while (message := await self._outbox.get()) is not None:
            yield message

    def send(self, message: agent_pb2.AgentMessage) -> None:
        self._outbox.put_nowait(message)

    def hello(
        self,
        agent_id: str,
        protocol: int = 1,
        capabilities: Sequence[str] = ("docker",),
        session: str = "",
    ) -> None:
        self.send(
            agent_pb2.AgentMessage(
                hello=agent_pb2.Hello(
                    id=agent_id,
                    version="9.9.9-test",
                    protocol=protocol,
                    capabilities=list(capabilities),
                    labels={"region": "eu"},
                    session=session,
                )
            )
        )

    async def receive(self) -> agent_pb2.ControlMessage:
        """The next message, after answering the server's own look at the engine (engine.info, asked
        when an engine attaches) as the real engine would."""
        while True:
            message = await asyncio.wait_for(self.call.read(), ANSWER_SECONDS)
            assert isinstance(message, agent_pb2.ControlMessage), f"the stream ended: {message!r}"
            if message.WhichOneof("body") != "command" or message.command.kind != "engine.info":
                return message
            self.send(
                agent_pb2.AgentMessage(
                    result=agent_pb2.CommandResult(
                        id=message.command.id, ok=True, result_json=json.dumps(real_engine_info()).encode()
                    )
                )
            )

    async def refusal(self) -> grpc.aio.AioRpcError:
        """How the server ended the stream (reading until it does)."""
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(self._read_to_the_end(), ANSWER_SECONDS)
        return raised.value

    async def _read_to_the_end(self) -> None:
        while await self.call.read() is not grpc.aio.EOF:
            pass
        raise AssertionError("the stream ended without an error")

    def close(self) -> None:
        self._outbox.put_nowait(None)


@functools.cache
def real_engine_info() -> dict[str, Any]:
    """The local engine's GET /version and GET /info, as an agent answers engine.info."""
    client = engine()
    try:
        return {"version": client.api.version(), "info": client.api.info()}
    finally:
        client.close()


def metadata(key: str | None, agent_id: str | None) -> list[tuple[str, str]]:
    entries = [] if key is None else [("authorization", f"Bearer {key}")]
    return entries + ([] if agent_id is None else [("worpen-agent-id", agent_id)])


@pytest.fixture
async def channel(server: WorpenServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.grpc_target) as opened:
        yield opened


async def connected(channel: grpc.aio.Channel, key: str, agent_id: str, session: str = "") -> ScriptedAgent:
    """An agent whose Hello was welcomed."""
    agent = ScriptedAgent(channel, metadata(key, agent_id))
    agent.hello(agent_id, session=session)
    welcome = await agent.receive()
    assert welcome.WhichOneof("body") == "welcome", welcome
    return agent


def error_code(error: grpc.aio.AioRpcError) -> object:
    return dict(error.trailing_metadata() or ()).get("worpen-error-code")


async def test_an_agent_says_hello_and_is_welcomed_with_its_node_and_pace(
    channel: grpc.aio.Channel, keys: ChannelKeys
) -> None:
    agent = ScriptedAgent(channel, metadata(keys.bee_001, "bee-001"))
    agent.hello("bee-001")
    message = await agent.receive()
    assert message.WhichOneof("body") == "welcome"
    welcome = message.welcome
    assert welcome.protocol == 1
    assert welcome.node == "bee-001"
    assert welcome.heartbeat_seconds >= 1
    assert welcome.server_version
    assert welcome.acknowledges
    agent.close()


async def test_a_protocol_version_the_server_does_not_speak_is_refused_saying_which_it_does(
    channel: grpc.aio.Channel, keys: ChannelKeys
) -> None:
    agent = ScriptedAgent(channel, metadata(keys.bee_001, "bee-001"))
    agent.hello("bee-001", protocol=99)
    error = await agent.refusal()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "protocol version 99 is not supported; this server speaks 1"


async def test_a_key_bound_to_one_agent_cannot_connect_as_another(
    channel: grpc.aio.Channel, keys: ChannelKeys
) -> None:
    agent = ScriptedAgent(channel, metadata(keys.bee_001, "bee-002"))
    agent.hello("bee-002")
    error = await agent.refusal()
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "bee-002" in (error.details() or "")
    assert error_code(error) == "forbidden"


@pytest.mark.parametrize("key", [None, "wpn_not-a-key-of-this-server-at-all"])
async def test_a_stream_without_a_valid_key_is_refused(channel: grpc.aio.Channel, key: str | None) -> None:
    agent = ScriptedAgent(channel, metadata(key, "bee-001"))
    agent.hello("bee-001")
    error = await agent.refusal()
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(error) == "unauthenticated"


async def test_a_hello_for_another_id_than_the_calls_is_refused(
    channel: grpc.aio.Channel, keys: ChannelKeys
) -> None:
    agent = ScriptedAgent(channel, metadata(keys.admin, "bee-001"))
    agent.hello("bee-002")
    error = await agent.refusal()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bee-002" in (error.details() or "")


async def test_a_stream_must_begin_with_a_hello_and_name_its_agent(
    channel: grpc.aio.Channel, keys: ChannelKeys
) -> None:
    agent = ScriptedAgent(channel, metadata(keys.admin, "bee-001"))
    agent.send(
        agent_pb2.AgentMessage(heartbeat=agent_pb2.AgentHeartbeat(beat=fleet_pb2.Heartbeat(id="bee-001")))
    )
    error = await agent.refusal()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Hello" in (error.details() or "")

    nameless = ScriptedAgent(channel, metadata(keys.admin, None))
    nameless.hello("bee-001")
    error = await nameless.refusal()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "worpen-agent-id" in (error.details() or "")


def heartbeat(agent_id: str, cpu: float, measured_at_ms: int = 0, seq: int = 0) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        seq=seq,
        heartbeat=agent_pb2.AgentHeartbeat(
            beat=fleet_pb2.Heartbeat(
                id=agent_id,
                cpu=cpu,
                ram=41.5,
                disk=12.25,
                ip="192.0.2.77",
                os="linux",
                version="9.9.9-test",
                uptime_seconds=3600,
            ),
            measured_at_ms=measured_at_ms,
            load1=0.5,
        ),
    )


async def test_a_heartbeat_over_the_stream_shows_with_its_readings_and_is_answered_only_on_change(
    channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient
) -> None:
    agent = await connected(channel, keys.admin, "chan-beat")
    agent.send(heartbeat("chan-beat", 12.5, int(time.time() * 1000)))
    first = await agent.receive()
    assert first.WhichOneof("body") == "pace", first
    assert first.pace.status == fleet_pb2.AGENT_STATUS_ONLINE
    assert first.pace.next_heartbeat_seconds >= 1

    answer = await http.get("/api/v1/agents/chan-beat")
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["cpuLoad"] == 12.5
    assert shown["memoryLoad"] == 41.5
    assert shown["ip"] == "192.0.2.77"
    assert shown["os"] == "linux"
    assert shown["uptimeSeconds"] == 3600
    assert shown["status"] == "ONLINE"

    # Same status, same pace: nothing is written back. The next message the agent gets is the
    # command a request sends it, not an acknowledgement of the heartbeat.
    agent.send(heartbeat("chan-beat", 13.5))
    inspected = asyncio.create_task(http.get("/api/v1/containers/web?node=chan-beat"))
    message = await agent.receive()
    assert message.WhichOneof("body") == "command", message
    agent.send(
        agent_pb2.AgentMessage(
            result=agent_pb2.CommandResult(
                id=message.command.id,
                ok=False,
                error=agent_pb2.CommandError(code="not_found", message="No such container: web"),
            )
        )
    )
    assert (await inspected).status_code == 404
    assert (await http.get("/api/v1/agents/chan-beat")).json()["cpuLoad"] == 13.5

    # A heartbeat the agent kept while disconnected is stored at the time it was measured.
    measured = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(minutes=5)
    agent.send(heartbeat("chan-beat", 14.5, int(measured.timestamp() * 1000)))
    async with asyncio.timeout(ANSWER_SECONDS):
        while True:
            samples = (await http.get("/api/v1/agents/chan-beat/telemetry", params={"limit": 10})).json()
            kept = [s for s in samples if datetime.datetime.fromisoformat(s["at"]) == measured]
            if kept:
                break
            await asyncio.sleep(0.1)
    assert kept[0]["cpu"] == 14.5
    agent.close()


async def test_a_second_connection_of_an_agent_replaces_the_first(
    channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient
) -> None:
    first = await connected(channel, keys.bee_001, "bee-001")
    second = await connected(channel, keys.bee_001, "bee-001")
    error = await first.refusal()
    assert error.code() == grpc.StatusCode.ABORTED
    assert "replaced" in (error.details() or "")

    # The newer stream is the agent's: its heartbeats are taken and answered.
    second.send(heartbeat("bee-001", 5.0))
    assert (await second.receive()).WhichOneof("body") == "pace"
    second.close()


async def received(agent: ScriptedAgent, seq: int) -> None:
    """Read until the server acknowledges the agent's numbered messages up to `seq` (Received)."""
    while True:
        message = await agent.receive()
        if message.WhichOneof("body") == "received" and message.received.seq >= seq:
            assert message.received.seq == seq, message
            return


async def test_numbered_heartbeats_are_acknowledged_and_those_sent_again_are_stored_once(
    channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient
) -> None:
    """The agent keeps each heartbeat until the server acknowledges it: those written to a stream that ended
    first come again on the next stream of the same run (session), and are taken in once."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    measured = [now - datetime.timedelta(seconds=50 - 10 * n) for n in range(5)]

    def beat(n: int) -> agent_pb2.AgentMessage:
        return heartbeat("chan-ack", 20.0 + n, int(measured[n].timestamp() * 1000), seq=n + 1)

    first = await connected(channel, keys.admin, "chan-ack", session="run-1")
    for n in range(3):
        first.send(beat(n))
    await received(first, 3)

    # A new stream of the same run: 2 and 3 were taken in (their Received was lost with the stream).
    second = await connected(channel, keys.admin, "chan-ack", session="run-1")
    for n in range(1, 4):
        second.send(beat(n))
    await received(second, 4)
    second.close()

    # A new run of the agent numbers from 1 again, in a session of its own.
    third = await connected(channel, keys.admin, "chan-ack", session="run-2")
    third.send(heartbeat("chan-ack", 24.0, int(measured[4].timestamp() * 1000), seq=1))
    await received(third, 1)
    third.close()

    async with asyncio.timeout(ANSWER_SECONDS):
        while True:
            samples = (await http.get("/api/v1/agents/chan-ack/telemetry", params={"limit": 50})).json()
            at = sorted(datetime.datetime.fromisoformat(s["at"]) for s in samples)
            if len(at) >= 5:
                break
            await asyncio.sleep(0.1)
    assert at == measured, "each heartbeat stored once, at the time it was measured"


async def test_nothing_is_acknowledged_while_the_database_cannot_write_it_and_nothing_is_lost(
    server: WorpenServer, channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient
) -> None:
    """A heartbeat is acknowledged once written: while the database is locked, a known agent's heartbeats
    wait unacknowledged (the agent keeps them), and a new agent's first one, which must be written at once,
    ends its stream UNAVAILABLE; once the lock is gone, both are taken in and acknowledged."""
    known = await connected(channel, keys.admin, "chan-lock-known", session="run-1")
    known.send(heartbeat("chan-lock-known", 1.0, seq=1))
    await received(known, 1)

    with writes_blocked(server.database_url):
        known.send(heartbeat("chan-lock-known", 2.0, seq=2))
        newcomer = await connected(channel, keys.admin, "chan-lock-new", session="run-1")
        newcomer.send(heartbeat("chan-lock-new", 3.0, seq=1))
        error = await newcomer.refusal()
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert (error.details() or "").startswith("database unavailable"), error.details()
        nothing = asyncio.create_task(received(known, 2))
        done, _ = await asyncio.wait({nothing}, timeout=1.0)
        assert not done, "acknowledged while the database could not write it"

    await asyncio.wait_for(nothing, ANSWER_SECONDS)
    known.close()
    again = await connected(channel, keys.admin, "chan-lock-new", session="run-1")
    again.send(heartbeat("chan-lock-new", 3.0, seq=1))
    await received(again, 1)
    again.close()
    shown = (await http.get("/api/v1/agents/chan-lock-new")).json()
    assert shown["cpuLoad"] == 3.0


async def test_an_agent_that_numbers_nothing_is_acknowledged_nothing(
    channel: grpc.aio.Channel, keys: ChannelKeys
) -> None:
    """An agent of a version that keeps nothing until acknowledged (no numbers) is sent no Received, even
    once its heartbeats were written."""
    agent = await connected(channel, keys.admin, "chan-unnumbered")
    agent.send(heartbeat("chan-unnumbered", 1.0))
    agent.send(heartbeat("chan-unnumbered", 2.0))
    first = await agent.receive()
    assert first.WhichOneof("body") == "pace", first
    # A numbered agent's Received comes after a flush that began once both heartbeats were taken in:
    # the flush after which the unnumbered agent's stream would have had its Received too.
    witness = await connected(channel, keys.admin, "chan-witness", session="run-1")
    witness.send(heartbeat("chan-witness", 1.0, seq=1))
    await received(witness, 1)
    witness.close()
    agent.close()
    with pytest.raises(AssertionError, match="the stream ended"):
        await agent.receive()


@pytest.fixture
def engine_json(docker_client: docker.DockerClient, containers: Containers) -> dict[str, Any]:
    """What the real engine says of a container of this session: the list (GET /containers/json?all=1)
    and its inspection (GET /containers/{id}/json), as an agent would relay them."""
    made = containers.run("sleep 300")
    assert made.id is not None
    listed = docker_client.api.containers(all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"})
    return {"list": listed, "inspect": docker_client.api.inspect_container(made.id), "name": made.name}


def inventory(containers: Any) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        inventory=agent_pb2.Inventory(
            containers_json=json.dumps(containers).encode(),
            images_json=b"[]",
            taken_at_ms=int(time.time() * 1000),
        )
    )


async def answer(agent: ScriptedAgent, kind: str, result: Mapping[str, Any]) -> agent_pb2.Command:
    """Answer the next command, which must be of `kind`, with `result`."""
    message = await agent.receive()
    assert message.WhichOneof("body") == "command", message
    command = message.command
    assert command.kind == kind, command
    agent.send(
        agent_pb2.AgentMessage(
            result=agent_pb2.CommandResult(id=command.id, ok=True, result_json=json.dumps(result).encode())
        )
    )
    return command


async def test_an_agents_containers_are_listed_from_its_inventory_and_inspected_through_its_stream(
    channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient, engine_json: dict[str, Any]
) -> None:
    agent = await connected(channel, keys.admin, "chan-node")
    agent.send(inventory(engine_json["list"]))
    name = engine_json["name"]

    listed: list[dict[str, Any]] = []
    async with asyncio.timeout(ANSWER_SECONDS):
        while not listed:
            answer_ = await http.get("/api/v1/containers", params={"node": "chan-node"})
            assert answer_.status_code == 200, answer_.text
            listed = [c for c in answer_.json() if c["name"] == name]
    assert listed[0]["node"] == "chan-node"
    assert listed[0]["state"] == "RUNNING"

    inspected = asyncio.create_task(http.get(f"/api/v1/containers/{name}", params={"node": "chan-node"}))
    command = await answer(agent, "containers.inspect", engine_json["inspect"])
    assert json.loads(command.params_json)["ref"] in {name, engine_json["inspect"]["Id"]}
    assert command.deadline_ms > time.time() * 1000, "a command carries when the server stops waiting"
    detail = await inspected
    assert detail.status_code == 200, detail.text
    assert detail.json()["name"] == name
    agent.close()


async def test_a_command_the_agent_does_not_answer_in_time_is_a_504_and_cancelled_on_the_agent(
    channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient, engine_json: dict[str, Any]
) -> None:
    agent = await connected(channel, keys.admin, "chan-slow")
    agent.send(inventory(engine_json["list"]))
    name = engine_json["name"]
    async with asyncio.timeout(ANSWER_SECONDS):
        while not (await http.get("/api/v1/containers", params={"node": "chan-slow"})).json():
            await asyncio.sleep(0.05)

    started = time.monotonic()
    inspected = asyncio.create_task(http.get(f"/api/v1/containers/{name}", params={"node": "chan-slow"}))
    command = (await agent.receive()).command
    cancel = await agent.receive()
    assert cancel.WhichOneof("body") == "cancel"
    assert cancel.cancel.id == command.id
    late = await inspected
    assert late.status_code == 504, late.text
    assert "did not answer containers.inspect" in late.text
    assert time.monotonic() - started >= COMMAND_TIMEOUT * 0.9

    # Gone, the agent's node answers 503 at once, naming it.
    agent.close()
    async with asyncio.timeout(ANSWER_SECONDS):
        while True:
            gone = await http.get(f"/api/v1/containers/{name}", params={"node": "chan-slow"})
            if gone.status_code == 503:
                break
            await asyncio.sleep(0.05)
    assert "chan-slow" in gone.text


async def test_connected_agents_and_their_commands_are_in_the_metrics(
    channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient
) -> None:
    agent = await connected(channel, keys.admin, "chan-metrics")
    metrics = (await http.get("/metrics")).text
    connected_line = next(
        line for line in metrics.splitlines() if line.startswith("worpen_agents_connected ")
    )
    assert float(connected_line.split()[1]) >= 1
    agent.close()


async def test_grpc_is_served_over_tls_when_given_a_certificate(channel_servers: ChannelServers) -> None:
    server = channel_servers.tls
    admin = server.initial_admin_key()
    credentials = grpc.ssl_channel_credentials(root_certificates=channel_servers.tls_cert)
    async with grpc.aio.secure_channel(server.grpc_target, credentials) as secure:
        agent = await connected(secure, admin, "chan-tls")
        agent.send(heartbeat("chan-tls", 7.0))
        assert (await agent.receive()).WhichOneof("body") == "pace"
        agent.close()

    async with grpc.aio.insecure_channel(server.grpc_target) as plain:
        agent = ScriptedAgent(plain, metadata(admin, "chan-tls"))
        agent.hello("chan-tls")
        error = await agent.refusal()
        assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_without_its_key_is_a_clear_configuration_error(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(self_signed()[0])
    server = launch_server(tmp_path / "worpen.db", {"WORPEN_GRPC_TLS_CERT": str(cert)})
    assert server.wait_for_exit() != 0
    assert "WORPEN_GRPC_TLS_KEY" in server.log()


def log_batch(command_id: str, *lines: str) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        log_batch=agent_pb2.LogBatch(
            command_id=command_id,
            lines=[
                agent_pb2.LogChunk(stream=1, line=f"2026-12-01T10:00:0{n}.000000001Z {text}".encode())
                for n, text in enumerate(lines)
            ],
        )
    )


async def test_a_containers_log_is_read_and_followed_through_the_agents_stream(
    channel: grpc.aio.Channel, keys: ChannelKeys, http: httpx.AsyncClient, engine_json: dict[str, Any]
) -> None:
    agent = await connected(channel, keys.admin, "chan-logs")
    agent.send(inventory(engine_json["list"]))
    name = engine_json["name"]

    read = asyncio.create_task(http.get(f"/api/v1/containers/{name}/logs", params={"node": "chan-logs"}))
    command = (await agent.receive()).command
    assert command.kind == "containers.logs"
    assert json.loads(command.params_json)["follow"] is False
    agent.send(log_batch(command.id))  # opened
    agent.send(log_batch(command.id, "first", "second"))
    agent.send(agent_pb2.AgentMessage(result=agent_pb2.CommandResult(id=command.id, ok=True)))
    answer_ = await read
    assert answer_.status_code == 200, answer_.text
    assert [json.loads(line)["line"] for line in answer_.text.splitlines()] == ["first", "second"]

    # A follower that leaves cancels the command on the agent.
    async with http.stream(
        "GET", f"/api/v1/containers/{name}/logs", params={"node": "chan-logs", "follow": "true"}
    ) as followed:
        command = (await agent.receive()).command
        assert json.loads(command.params_json)["follow"] is True
        agent.send(log_batch(command.id))
        agent.send(log_batch(command.id, "live"))
        async for line in followed.aiter_lines():
            if line.startswith("data:"):
                assert json.loads(line.removeprefix("data:"))["line"] == "live"
                break
    cancel = await agent.receive()
    assert cancel.WhichOneof("body") == "cancel", cancel
    assert cancel.cancel.id == command.id
    agent.close()
