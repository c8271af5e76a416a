"""Stand-ins for the agent's loop tests: a scripted engine (worpen_agent.engine's interface) and a real
gRPC AgentChannel server on loopback whose answers each test chooses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc import aio

from worpen_proto.v1 import agent_pb2, agent_pb2_grpc

Send = Callable[[agent_pb2.AgentMessage], Awaitable[None]]


class StandInEngine:
    """Answers every command with {"kind": ...}; events are what a test puts in `event_queue`."""

    def __init__(self) -> None:
        self.event_queue: asyncio.Queue[agent_pb2.EngineEvent] = asyncio.Queue()
        self.cancelled: list[str] = []
        self.inventories = 0
        self.closed = False
        self.blocked: asyncio.Event = asyncio.Event()

    async def handle(self, command: agent_pb2.Command, send: Send) -> None:
        if command.kind == "block":
            await self.blocked.wait()
        body = json.dumps({"kind": command.kind}).encode()
        await send(
            agent_pb2.AgentMessage(result=agent_pb2.CommandResult(id=command.id, ok=True, result_json=body))
        )

    def cancel(self, command_id: str) -> None:
        self.cancelled.append(command_id)

    async def inventory(self) -> agent_pb2.Inventory:
        self.inventories += 1
        return agent_pb2.Inventory(containers_json=b"[]", images_json=b"[]", taken_at_ms=self.inventories)

    async def events(self) -> AsyncIterator[agent_pb2.EngineEvent]:
        while True:
            yield await self.event_queue.get()

    async def close(self) -> None:
        self.closed = True


def container_event(action: str, n: int) -> agent_pb2.EngineEvent:
    return agent_pb2.EngineEvent(
        event_json=json.dumps({"Type": "container", "Action": action, "Actor": {"ID": f"c{n}"}}).encode()
    )


@dataclass
class Stream:
    """One Connect call as the server saw it."""

    metadata: dict[str, str]
    hello: agent_pb2.Hello
    control: asyncio.Queue[agent_pb2.ControlMessage | None] = field(default_factory=asyncio.Queue)
    received: list[agent_pb2.AgentMessage] = field(default_factory=list)


class ScriptedServer(agent_pb2_grpc.AgentChannelServicer):
    """Welcomes protocol 1 (FAILED_PRECONDITION otherwise) unless `refusal` is set; records every message.
    With `acknowledges`, the Welcome says so, and the test sends the Received messages itself."""

    def __init__(self, heartbeat_seconds: int = 1) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.acknowledges = False
        self.refusal: tuple[grpc.StatusCode, str] | None = None
        self.streams: list[Stream] = []
        self.received: list[agent_pb2.AgentMessage] = []

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.ControlMessage]:
        first = await anext(aiter(request_iterator))
        stream = Stream(dict(context.invocation_metadata()), first.hello)
        self.streams.append(stream)
        if self.refusal is not None:
            await context.abort(*self.refusal)
        if first.hello.protocol != 1:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol {first.hello.protocol} is not supported: this server speaks 1",
            )
        yield agent_pb2.ControlMessage(
            welcome=agent_pb2.Welcome(
                protocol=1,
                heartbeat_seconds=self.heartbeat_seconds,
                server_version="test",
                node=first.hello.id,
                acknowledges=self.acknowledges,
            )
        )
        reader = asyncio.create_task(self._record(request_iterator, stream))
        try:
            while (control := await stream.control.get()) is not None:
                yield control
        finally:
            reader.cancel()

    async def _record(self, requests: AsyncIterator[agent_pb2.AgentMessage], stream: Stream) -> None:
        async for message in requests:
            self.received.append(message)
            stream.received.append(message)

    def of(self, body: str) -> list[agent_pb2.AgentMessage]:
        return [m for m in self.received if m.WhichOneof("body") == body]

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                await asyncio.sleep(0.02)

    async def send(self, message: agent_pb2.ControlMessage) -> None:
        await self.streams[-1].control.put(message)

    async def end_stream(self) -> None:
        await self.streams[-1].control.put(None)


async def serve(servicer: ScriptedServer) -> tuple[aio.Server, int]:
    server = aio.server()
    agent_pb2_grpc.add_AgentChannelServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port
