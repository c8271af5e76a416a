"""One connection to Worpen: the AgentChannel.Connect stream from Hello to its end.

The stream has one writer. It sends the outbox first (heartbeats and engine events, oldest first, each
taken out only once the server acknowledged it) and then the connection's own messages (inventories,
command outputs and results), so whatever was buffered while disconnected reaches the server before anything
newer. Command outputs and results are never kept past the stream: the server forgot those commands when it
ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol

import grpc
from grpc import aio

from worpen_agent.config import AgentConfig
from worpen_agent.metrics import route_address
from worpen_agent.outbox import Outbox
from worpen_agent.version import agent_version
from worpen_proto.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("worpen_agent.channel")

WELCOME_TIMEOUT = 10.0
INVENTORY_DEBOUNCE = 0.5
_QUEUE_SIZE = 256
"""The connection's own messages waiting for the writer: a chatty command (a log follow) waits for the
stream rather than filling memory."""

REFUSALS = {"UNAUTHENTICATED", "PERMISSION_DENIED", "FAILED_PRECONDITION", "INVALID_ARGUMENT"}
"""Stream ends that an operator has to fix on the server's side or in the agent's key, id or version."""

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
"""Keepalive finds a connection that died silently (a partition, a server host that vanished) within
half a minute, even between heartbeats; Worpen's gRPC server accepts a client's pings every 5 s."""

Send = Callable[[agent_pb2.AgentMessage], Awaitable[None]]


class Engine(Protocol):
    """The node's Docker engine as the channel uses it (worpen_agent.engine.Engine)."""

    async def handle(self, command: agent_pb2.Command, send: Send) -> None: ...

    def cancel(self, command_id: str) -> None: ...

    async def inventory(self) -> agent_pb2.Inventory: ...

    def events(self) -> AsyncIterator[agent_pb2.EngineEvent]: ...

    async def close(self) -> None: ...


class Reporter(Protocol):
    """What a connection needs of the process's reporting: set the pace, send a heartbeat now."""

    def set_pace(self, seconds: int) -> None: ...

    def beat_now(self) -> None: ...

    def set_ip(self, ip: str) -> None: ...


class StreamEnded(Exception):
    """The stream is over: `code` is the gRPC status name (or TIMEOUT, PROTOCOL), `details` the server's
    message, `welcomed` whether it got as far as Welcome."""

    def __init__(self, code: str, details: str, *, welcomed: bool) -> None:
        super().__init__(f"{code}: {details}" if details else code)
        self.code = code
        self.details = details
        self.welcomed = welcomed

    @property
    def refused(self) -> bool:
        return self.code in REFUSALS


def open_channel(config: AgentConfig) -> aio.Channel:
    if config.tls_ca is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=config.tls_ca)
        return aio.secure_channel(config.server, credentials, options=_CHANNEL_OPTIONS)
    return aio.insecure_channel(config.server, options=_CHANNEL_OPTIONS)


def hello(config: AgentConfig, session: str) -> agent_pb2.AgentMessage:
    capabilities = ["docker", *(["shell"] if config.allow_shell else [])]
    return agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            id=config.agent_id,
            version=agent_version(),
            protocol=config.protocol,
            capabilities=capabilities,
            labels=dict(config.labels),
            session=session,
        )
    )


def result(
    command_id: str, value: Any = None, *, code: str = "", message: str = ""
) -> agent_pb2.AgentMessage:
    """A CommandResult: ok with `value` as JSON, or the error `code` and `message`."""
    if code:
        return agent_pb2.AgentMessage(
            result=agent_pb2.CommandResult(
                id=command_id, ok=False, error=agent_pb2.CommandError(code=code, message=message)
            )
        )
    body = b"" if value is None else json.dumps(value).encode()
    return agent_pb2.AgentMessage(result=agent_pb2.CommandResult(id=command_id, ok=True, result_json=body))


class Connection:
    def __init__(self, config: AgentConfig, engine: Engine, outbox: Outbox, reporter: Reporter) -> None:
        self._config = config
        self._engine = engine
        self._outbox = outbox
        self._reporter = reporter
        self._queue: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue(_QUEUE_SIZE)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inventory_task: asyncio.Task[None] | None = None
        self._inventory_dirty = False
        self.welcomed = False
        self._acknowledged = False
        """Whether the server answers Received: if not, a message leaves the outbox once written."""

    async def run(self, channel: aio.Channel) -> None:
        """Connect, say Hello, serve the stream until it ends; always raises StreamEnded (or is cancelled)."""
        metadata = (
            ("authorization", f"Bearer {self._config.key}"),
            ("worpen-agent-id", self._config.agent_id),
        )
        call = agent_pb2_grpc.AgentChannelStub(channel).Connect(metadata=metadata)
        try:
            try:
                await call.write(hello(self._config, self._outbox.session))
                first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT)
            except TimeoutError as exc:
                raise StreamEnded(
                    "TIMEOUT", f"no Welcome within {WELCOME_TIMEOUT:.0f} s", welcomed=False
                ) from exc
            if first is aio.EOF:
                raise await self._ended(call)
            self._welcome(first)
            await self._serve(call)
        except aio.AioRpcError as exc:
            raise StreamEnded(exc.code().name, exc.details() or "", welcomed=self.welcomed) from exc
        finally:
            self._outbox.on_put = None
            await self._stop_tasks()
            call.cancel()

    def _welcome(self, message: agent_pb2.ControlMessage) -> None:
        if message.WhichOneof("body") != "welcome":
            raise StreamEnded(
                "PROTOCOL",
                f"the server's first message is {message.WhichOneof('body')}, not welcome",
                welcomed=False,
            )
        welcome = message.welcome
        if welcome.protocol != self._config.protocol:
            raise StreamEnded(
                "PROTOCOL",
                f"the server answered protocol {welcome.protocol}; this agent speaks {self._config.protocol}",
                welcomed=False,
            )
        self.welcomed = True
        self._acknowledged = welcome.acknowledges
        self._outbox.rewind()
        self._reporter.set_pace(welcome.heartbeat_seconds)
        self._reporter.beat_now()
        log.info(
            "connected to %s as %s (node %s, server %s, protocol %d, heartbeat every %d s, %d buffered "
            "to send)",
            self._config.server,
            self._config.agent_id,
            welcome.node or self._config.agent_id,
            welcome.server_version or "?",
            welcome.protocol,
            welcome.heartbeat_seconds,
            len(self._outbox),
        )
        dropped = self._outbox.take_dropped()
        if dropped:
            log.warning(
                "%d heartbeats or events were dropped while disconnected (buffer of %d)",
                dropped,
                self._outbox.capacity,
            )

    async def _serve(self, call: aio.StreamStreamCall) -> None:
        self._outbox.on_put = self._wake.set
        self._spawn(self._learn_ip())
        self.inventory_soon(delay=0)
        reader = asyncio.create_task(self._read(call))
        writer = asyncio.create_task(self._write(call))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.cancel()
            reader.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        if reader in done and reader.exception() is None:
            raise await self._ended(call)
        failed = reader if reader in done else writer
        error = failed.exception()
        if isinstance(error, aio.AioRpcError | StreamEnded):
            raise error
        if call.done():
            raise await self._ended(call)
        raise StreamEnded("BROKEN", f"the stream failed: {error!r}", welcomed=True) from error

    async def _ended(self, call: aio.StreamStreamCall) -> StreamEnded:
        code = await call.code()
        details = await call.details()
        if code == grpc.StatusCode.OK:
            return StreamEnded("OK", details or "the server ended the stream", welcomed=self.welcomed)
        return StreamEnded(code.name, details or "", welcomed=self.welcomed)

    async def _read(self, call: aio.StreamStreamCall) -> None:
        while True:
            message = await call.read()
            if message is aio.EOF:
                return
            self._dispatch(message)

    async def _write(self, call: aio.StreamStreamCall) -> None:
        while True:
            message = self._outbox.next_unwritten()
            if message is not None:
                await call.write(message)
                self._outbox.written(message.seq)
                if not self._acknowledged:
                    self._outbox.acknowledge(message.seq)
                continue
            if not self._queue.empty():
                await call.write(self._queue.get_nowait())
                continue
            self._wake.clear()
            await self._wake.wait()

    async def send(self, message: agent_pb2.AgentMessage) -> None:
        """Send a message of this connection (not kept if the stream ends); waits while the queue is full."""
        await self._queue.put(message)
        self._wake.set()

    def _dispatch(self, message: agent_pb2.ControlMessage) -> None:
        body = message.WhichOneof("body")
        if body == "command":
            self._command(message.command)
        elif body == "cancel":
            self._engine.cancel(message.cancel.id)
        elif body == "pace":
            self._reporter.set_pace(message.pace.next_heartbeat_seconds)
        elif body == "received":
            self._outbox.acknowledge(message.received.seq)

    def _command(self, command: agent_pb2.Command) -> None:
        if command.kind == "ping":
            self._spawn(self.send(result(command.id, {})))
        elif command.kind == "sync":
            self._spawn(self._sync(command.id))
        else:
            self._spawn(self._run_command(command))

    async def _run_command(self, command: agent_pb2.Command) -> None:
        try:
            await self._engine.handle(command, self.send)
        except Exception as exc:
            log.exception("command %s (%s) failed in the agent", command.id, command.kind)
            await self.send(result(command.id, code="engine_failed", message=f"the agent failed: {exc}"))

    async def _sync(self, command_id: str) -> None:
        try:
            inventory = await self._engine.inventory()
        except Exception as exc:
            log.warning("sync: no inventory: %s", exc)
            await self.send(result(command_id, code="unavailable", message=f"no inventory: {exc}"))
            return
        await self.send(agent_pb2.AgentMessage(inventory=inventory))
        self._reporter.beat_now()
        await self.send(result(command_id, {}))

    def inventory_soon(self, delay: float = INVENTORY_DEBOUNCE) -> None:
        """Send the inventory after `delay`; calls within the delay (a burst of container events) share one,
        and one arriving while it is taken triggers another."""
        self._inventory_dirty = True
        if self._inventory_task is None or self._inventory_task.done():
            self._inventory_task = self._spawn(self._send_inventory(delay))

    async def _send_inventory(self, delay: float) -> None:
        while self._inventory_dirty:
            await asyncio.sleep(delay)
            self._inventory_dirty = False
            try:
                inventory = await self._engine.inventory()
            except Exception as exc:
                log.warning("no inventory to send: %s", exc)
                return
            await self.send(agent_pb2.AgentMessage(inventory=inventory))
            delay = INVENTORY_DEBOUNCE

    async def _learn_ip(self) -> None:
        address = await asyncio.to_thread(route_address, self._config.host, self._config.port)
        if address is not None:
            self._reporter.set_ip(address)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _stop_tasks(self) -> None:
        """Cancel the commands and sends of this stream: their results would go nowhere."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
