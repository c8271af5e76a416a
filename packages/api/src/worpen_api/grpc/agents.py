"""The agents' command channel over gRPC (AgentChannel.Connect): an agent's one stream becomes its link
(core Agents), what it reports goes to the fleet and to its engine's runtime, and the commands the control
plane sends it travel back on the same stream (NAT-safe: the agent dialled, the node opens no port)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any, Protocol

import grpc
import structlog

from worpen_api.error_codes import error_code
from worpen_api.grpc.fleet import ERROR_CODE_KEY, Context, abort, authenticate, to_ack, to_command
from worpen_core.access.service import Authenticator
from worpen_core.agents.model import PROTOCOL_VERSIONS, AgentHello, CommandRefused
from worpen_core.agents.ports import AgentLink, CommandStream, LogChunks
from worpen_core.agents.service import Agents, dependency
from worpen_core.containers.ports import ContainerRuntime
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import (
    Conflict,
    InvalidInput,
    TimedOut,
    Unavailable,
    WorpenError,
)
from worpen_core.shared.ids import check_agent_id
from worpen_proto.v1 import agent_pb2, agent_pb2_grpc

log = structlog.get_logger("worpen.agents")

AGENT_ID_KEY = "worpen-agent-id"
"""The call metadata that names the connecting agent (its key must be allowed to report for it)."""
HELLO_SECONDS = 10.0
"""How long a new stream may take to send its Hello."""
OUTBOX_LIMIT = 1024
"""Messages waiting to be written to one agent; beyond, it is not reading and sends fail (503)."""
STREAM_BUFFER_BYTES = 4 * 1024 * 1024
"""Output of one streaming command waiting for its reader (at least one 1 MiB log batch fits)."""
STREAM_BUFFER_ITEMS = 1024
TEXT_MAX = 255
"""The longest version, label key or label value a Hello may carry."""
LABELS_MAX = 64
ACKNOWLEDGE_EVERY = 5.0
"""Seconds between two Received on one stream at most: each costs the server about half of what taking a
heartbeat in does (bench/agents), and an agent only needs them to free its buffer and to send less again
after a lost stream."""

CommandCounts = Counter[tuple[str, str]]
"""Commands sent to agents by (kind, outcome: ok, refused, timed_out, unavailable, cancelled)."""


class EngineFeed(Protocol):
    """What an agent's stream reports about its node's engine, for the runtime that serves it."""

    def take_inventory(self, containers_json: bytes, images_json: bytes, taken_at: datetime) -> None: ...

    def take_event(self, event_json: bytes) -> None: ...

    def disconnected(self, reason: str) -> None: ...


class FedRuntime(ContainerRuntime, EngineFeed, Protocol):
    """A container runtime driven through an agent's link and fed by its stream."""


def fed_runtimes(make: Callable[[AgentLink], FedRuntime]) -> Callable[[AgentLink], ContainerRuntime]:
    """`Agents`' runtime_for: the runtime `make` builds for a link is also the one that link's stream
    feeds (inventories, engine events, the stream's end)."""

    def runtime_for(link: AgentLink) -> ContainerRuntime:
        runtime = make(link)
        if isinstance(link, GrpcAgentLink):
            link.feed = runtime
        return runtime

    return runtime_for


@dataclass(frozen=True, slots=True)
class _Ending:
    """How the server ends a stream itself: the status, its detail and the error code trailer."""

    status: grpc.StatusCode
    detail: str
    code: str | None = None

    @classmethod
    def of(cls, exc: WorpenError) -> _Ending:
        entry = error_code(exc)
        return cls(entry.grpc_status, exc.detail, entry.code)


def _decode(data: bytes) -> Any:
    """A command's result_json; raises CommandRefused when the agent sent something that is not JSON."""
    try:
        return json.loads(data or b"{}")
    except ValueError as exc:
        raise CommandRefused(
            "engine_failed", f"the agent answered a result that is not JSON: {exc}"
        ) from None


async def _first_message(requests: AsyncIterator[agent_pb2.AgentMessage]) -> agent_pb2.AgentMessage | None:
    """The stream's first message; None when none came within HELLO_SECONDS or the stream ended."""
    try:
        async with asyncio.timeout(HELLO_SECONDS):
            return await anext(aiter(requests), None)
    except TimeoutError:
        return None


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, CommandRefused):
        return "refused"
    if isinstance(exc, TimedOut):
        return "timed_out"
    return "unavailable"


class GrpcAgentLink:
    """One agent's stream as core's AgentLink. Written by one writer (the servicer's response generator,
    fed by `outgoing`); what costs memory (a command's pending answer, a stream's buffer) exists only
    while a command is in flight."""

    def __init__(self, hello: AgentHello, counts: CommandCounts, session: str) -> None:
        self.hello = hello
        self.session = session
        """The agent's run its numbered messages count in (Hello.session; empty: it numbers none)."""
        self.feed: EngineFeed | None = None
        """The runtime that serves this agent's engine, when it has one (see fed_runtimes)."""
        self.last_ack: tuple[AgentStatus | None, int] = (None, 0)
        """The status and pace the agent was last told: a heartbeat is answered only when they change."""
        self._counts = counts
        self._dependency = dependency(hello.id)
        self._ids = itertools.count(1)
        self._outbox: deque[agent_pb2.ControlMessage] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._pending: dict[str, asyncio.Future[Any] | _Stream] = {}
        self.taken = 0
        """The highest number of the agent's session this stream took in (or skipped: taken before)."""
        self._received = 0
        self._acknowledged = 0
        self.acknowledged_at = -ACKNOWLEDGE_EVERY
        """When (monotonic) the last Received was asked for."""
        self.intake = asyncio.Lock()
        """Held while a message is taken in: a server that stops waits for the one under way."""
        self.intake_closed = False
        """The server is stopping: what the agent sends now is not taken in (it sends it to the next)."""
        self._ended: str | None = None
        self.ending: _Ending | None = None
        """Set when the server ends the stream itself (replaced, shutting down, a protocol error)."""

    @property
    def open(self) -> bool:
        return self._ended is None

    @property
    def end_reason(self) -> str | None:
        return self._ended

    async def call(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        data: bytes = b"",
        timeout: float | None,  # noqa: ASYNC109 (core's AgentLink: the command's own deadline)
    ) -> Any:
        command_id = self.next_id()
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = answer
        try:
            self.send(self._command(command_id, kind, params, data, timeout))
            try:
                async with asyncio.timeout(timeout):
                    result = await answer
            except TimeoutError:
                self.cancel_command(command_id)
                raise self._timed_out(kind, timeout) from None
            except asyncio.CancelledError:
                self.cancel_command(command_id)  # the caller left (an HTTP client went away)
                raise
        except (WorpenError, CommandRefused) as exc:
            self._counts[kind, _outcome(exc)] += 1
            raise
        finally:
            self._pending.pop(command_id, None)
        self._counts[kind, "ok"] += 1
        return result

    async def stream(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 (core's AgentLink: bounds the wait for the first message)
    ) -> CommandStream:
        command_id = self.next_id()
        stream = _Stream(self, command_id, kind)
        self._pending[command_id] = stream
        try:
            self.send(self._command(command_id, kind, params, b"", None))
        except Unavailable:
            self._pending.pop(command_id, None)
            self._counts[kind, "unavailable"] += 1
            raise
        try:
            async with asyncio.timeout(timeout):
                await stream.opened()  # the stream counts how it ended, if it did
        except TimeoutError:
            self._counts[kind, "timed_out"] += 1
            self._abandon(command_id)
            raise self._timed_out(kind, timeout) from None
        except asyncio.CancelledError:
            self._abandon(command_id)
            raise
        return stream

    async def close(self, reason: str) -> None:
        """End the stream with ABORTED and `reason` (the agent was replaced or went silent)."""
        self.end(reason, _Ending(grpc.StatusCode.ABORTED, reason))

    def end(self, reason: str, ending: _Ending | None = None) -> None:
        """The stream is over (or ends now, with `ending`): commands waiting for an answer fail with
        Unavailable, and so do those sent from now on. Idempotent: the first reason stays."""
        if self._ended is not None:
            return
        self._ended = reason
        self.ending = ending
        gone = Unavailable(self._dependency, "the agent disconnected")
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if isinstance(entry, _Stream):
                entry.fail(gone)
            elif not entry.done():
                entry.set_exception(gone)
        self._outbox.clear()
        self._wakeup()

    def send(self, message: agent_pb2.ControlMessage) -> None:
        if self._ended is not None:
            raise Unavailable(self._dependency, "the agent disconnected")
        if len(self._outbox) >= OUTBOX_LIMIT:
            raise Unavailable(self._dependency, "the agent does not read what it is sent")
        self._outbox.append(message)
        self._wakeup()

    def received(self, seq: int, at: float) -> None:
        """The agent's numbered messages up to `seq` were taken in and written (seen at monotonic `at`):
        say so once nothing else is waiting."""
        if seq > self._received:
            self._received = seq
            self.acknowledged_at = at
            self._wakeup()

    async def outgoing(self) -> agent_pb2.ControlMessage | None:
        """The next message to write to the agent; None once the stream is over (after a last Received, if
        one is due: a server that stops acknowledges what it wrote before it ends the streams)."""
        while True:
            if self._outbox:
                return self._outbox.popleft()
            if self._received > self._acknowledged:
                self._acknowledged = self._received
                return agent_pb2.ControlMessage(received=agent_pb2.Received(seq=self._received))
            if self._ended is not None:
                return None
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None

    def take_result(self, result: agent_pb2.CommandResult) -> None:
        entry = self._pending.pop(result.id, None)
        if isinstance(entry, _Stream):
            entry.finish(result)
        elif entry is not None and not entry.done():
            if result.ok:
                try:
                    entry.set_result(_decode(result.result_json))
                except CommandRefused as exc:
                    entry.set_exception(exc)
            else:
                entry.set_exception(CommandRefused(result.error.code, result.error.message))

    def take_output(self, command_id: str, output: bytes | LogChunks) -> None:
        entry = self._pending.get(command_id)
        if isinstance(entry, _Stream):
            entry.take(output)

    def count(self, kind: str, outcome: str) -> None:
        self._counts[kind, outcome] += 1

    def forget(self, command_id: str) -> None:
        self._pending.pop(command_id, None)

    def next_id(self) -> str:
        return str(next(self._ids))

    def _abandon(self, command_id: str) -> None:
        if self._pending.pop(command_id, None) is not None:
            self.cancel_command(command_id)

    def cancel_command(self, command_id: str) -> None:
        """Tell the agent to stop a command nobody waits for any more (best effort: the stream may be
        gone or full, and then the command ends with it)."""
        try:
            self.send(agent_pb2.ControlMessage(cancel=agent_pb2.Cancel(id=command_id)))
        except Unavailable:
            return

    def _timed_out(self, kind: str, timeout: float | None) -> TimedOut:
        return TimedOut(f"{self._dependency} did not answer {kind} within {timeout:g} s")

    @staticmethod
    def _command(
        command_id: str, kind: str, params: Mapping[str, Any], data: bytes, timeout: float | None
    ) -> agent_pb2.ControlMessage:
        deadline = 0 if timeout is None else int((time.time() + timeout) * 1000)
        return agent_pb2.ControlMessage(
            command=agent_pb2.Command(
                id=command_id,
                kind=kind,
                params_json=json.dumps(params, separators=(",", ":")).encode(),
                data=data,
                deadline_ms=deadline,
            )
        )

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


class _Stream:
    """A streaming command's output as core's CommandStream: buffered up to a bound, beyond which the
    command is cancelled (a reader that falls behind does not make the server hold a node's whole log)."""

    def __init__(self, link: GrpcAgentLink, command_id: str, kind: str) -> None:
        self._link = link
        self.id = command_id
        self.kind = kind
        self._items: deque[bytes | LogChunks] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self._ended = False
        self._error: BaseException | None = None
        self._result: Any = None

    async def opened(self) -> None:
        """Wait for the agent's first message: the command opened, or ended at once (then raise how)."""
        while not self._started and not self._ended:
            await self._wait()
        if self._ended and self._error is not None and not self._items:
            raise self._error

    async def next(self) -> bytes | LogChunks | None:
        while True:
            if self._items:
                item = self._items.popleft()
                self._bytes -= _size(item)
                return item
            if self._ended:
                if self._error is not None:
                    raise self._error
                return None
            await self._wait()

    async def write(self, data: bytes) -> None:
        """Input for the command; dropped once the command ended (as a closed pipe's would be)."""
        if self._ended:
            return
        self._link.send(
            agent_pb2.ControlMessage(
                command=agent_pb2.Command(
                    id=self._link.next_id(),
                    kind="stdin",
                    params_json=json.dumps({"target": self.id}).encode(),
                    data=data,
                )
            )
        )

    def result(self) -> Any:
        return self._result

    async def close(self) -> None:
        if self._ended:
            return
        self._end(None)
        self._link.forget(self.id)
        self._link.count(self.kind, "cancelled")
        self._link.cancel_command(self.id)

    def take(self, output: bytes | LogChunks) -> None:
        self._started = True
        if self._ended:
            return
        if output:
            self._items.append(output)
            self._bytes += _size(output)
            if self._bytes > STREAM_BUFFER_BYTES or len(self._items) > STREAM_BUFFER_ITEMS:
                self._overflow()
        self._notify()

    def finish(self, result: agent_pb2.CommandResult) -> None:
        self._started = True
        if self._ended:
            return
        try:
            if not result.ok:
                raise CommandRefused(result.error.code, result.error.message)
            self._result = _decode(result.result_json)
        except CommandRefused as exc:
            self._link.count(self.kind, "refused")
            self._end(exc)
            return
        self._link.count(self.kind, "ok")
        self._end(None)

    def fail(self, error: BaseException) -> None:
        if not self._ended:
            self._link.count(self.kind, _outcome(error))
            self._end(error)

    def _overflow(self) -> None:
        self._items.clear()
        self._bytes = 0
        self.fail(
            Unavailable(
                dependency(self._link.hello.id),
                f"{self.kind} output came faster than it was read: the command was cancelled",
            )
        )
        self._link.forget(self.id)
        self._link.cancel_command(self.id)

    def _end(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error
        self._notify()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _notify(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _size(item: bytes | LogChunks) -> int:
    return len(item) if isinstance(item, bytes) else sum(len(line) for _, line in item)


class _ProtocolError(Exception):
    """The agent broke the protocol after its Hello: the stream ends with INVALID_ARGUMENT."""


class _NotTaken(Exception):
    """A numbered message could not be taken in (the database is down): the stream ends UNAVAILABLE, and
    the agent, which keeps what was not acknowledged, sends it again on its next stream."""

    def __init__(self, error: Unavailable) -> None:
        super().__init__(error.detail)
        self.error = error


class AgentChannelServicer(agent_pb2_grpc.AgentChannelServicer):
    def __init__(
        self,
        agents: Agents,
        fleet: Fleet,
        authenticator: Authenticator | None,
        counts: CommandCounts,
    ) -> None:
        """`authenticator` None means authentication is off (development on loopback only)."""
        self._agents = agents
        self._fleet = fleet
        self._authenticator = authenticator
        self._counts = counts
        self._links: set[GrpcAgentLink] = set()
        self._taken: dict[str, tuple[str, int]] = {}
        """Per agent, its session and the highest number taken in: what a new stream of the same run sends
        again (written to a stream that ended before the Received) is skipped, not counted twice."""
        self._server_version = version("worpen-api")

    def acknowledging(self, flush: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """`flush` (the telemetry flush), after which the streams acknowledge to their agents what they took
        in before it began (Received): an acknowledged heartbeat is written, and the agent forgets it. A
        stream acknowledges every ACKNOWLEDGE_EVERY seconds at most, whatever the number of heartbeats;
        none while the flush fails (the agents keep what they sent, as they do while disconnected)."""

        async def flush_then_acknowledge() -> None:
            await self._flush_then_acknowledge(flush, every=ACKNOWLEDGE_EVERY)

        return flush_then_acknowledge

    async def _flush_then_acknowledge(self, flush: Callable[[], Awaitable[object]], every: float) -> None:
        now = time.monotonic()
        due = [(link, link.taken) for link in self._links if now - link.acknowledged_at >= every]
        await flush()
        for link, seq in due:
            link.received(seq, now)

    async def close_all(self, reason: str) -> None:
        """End every stream (the server is stopping): agents reconnect to the next server. The streams stop
        taking messages in, and what they took is written and acknowledged first, so that the agents send
        the next server only what this one did not take (and all they kept if the database cannot write
        now)."""
        for link in list(self._links):
            async with link.intake:
                link.intake_closed = True
        try:
            await self._flush_then_acknowledge(self._fleet.flush, every=0)
        except WorpenError as exc:
            log.warning("agent.acknowledgements.skipped", detail=exc.detail)
        for link in list(self._links):
            link.end(reason, _Ending(grpc.StatusCode.UNAVAILABLE, reason, "unavailable"))

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> AsyncIterator[agent_pb2.ControlMessage]:
        try:
            # The first message is read before any refusal: an agent sends its Hello with the call, and
            # a stream ended while that write is under way reaches the agent as an INTERNAL error of
            # its own instead of the server's refusal (a bad key, a protocol it does not speak).
            first = await _first_message(request_iterator)
            principal = await authenticate(context, self._authenticator)
            agent_id = _metadata_id(context)
            principal.authorize_report(agent_id)
            hello, session = self._hello(first, agent_id)
            link = GrpcAgentLink(hello, self._counts, session)
            pace = self._fleet.policy.next_heartbeat_seconds(self._fleet.size)
            link.last_ack = (None, pace)
            await self._agents.attach(link, context.peer())
        except WorpenError as exc:
            await abort(context, exc)
            return
        self._links.add(link)
        log.info(
            "agent.connected",
            agent_id=agent_id,
            version=hello.version,
            capabilities=sorted(hello.capabilities),
            peer=context.peer(),
        )
        reader = asyncio.create_task(self._read(link, request_iterator), name=f"agent {agent_id} stream")
        try:
            yield agent_pb2.ControlMessage(
                welcome=agent_pb2.Welcome(
                    protocol=hello.protocol,
                    heartbeat_seconds=pace,
                    server_version=self._server_version,
                    node=agent_id,
                    acknowledges=True,
                )
            )
            while (message := await link.outgoing()) is not None:
                yield message
            ending = link.ending
            if ending is not None:
                if ending.code is not None:
                    context.set_trailing_metadata(((ERROR_CODE_KEY, ending.code),))
                await context.abort(ending.status, ending.detail)
        finally:
            reader.cancel()
            link.end("the stream ended")
            self._links.discard(link)
            if link.feed is not None:
                link.feed.disconnected(link.end_reason or "the stream ended")
            self._agents.detach(link)
            log.info("agent.disconnected", agent_id=agent_id, reason=link.end_reason)

    @staticmethod
    def _hello(first: agent_pb2.AgentMessage | None, agent_id: str) -> tuple[AgentHello, str]:
        """The agent's Hello, and the session its numbered messages count in."""
        if first is None:
            raise InvalidInput(f"no Hello within {HELLO_SECONDS:g} s", "hello")
        if first.WhichOneof("body") != "hello":
            raise InvalidInput("the first message of the stream must be a Hello", "hello")
        hello = first.hello
        if hello.id != agent_id:
            raise InvalidInput(
                f"the Hello is for agent {hello.id!r}, the call's {AGENT_ID_KEY} is {agent_id!r}", "hello.id"
            )
        if hello.protocol not in PROTOCOL_VERSIONS:
            spoken = ", ".join(str(number) for number in sorted(PROTOCOL_VERSIONS))
            raise Conflict(f"protocol version {hello.protocol} is not supported; this server speaks {spoken}")
        labels = dict(hello.labels)
        for field, text in (("hello.version", hello.version), ("hello.session", hello.session)):
            if len(text) > TEXT_MAX:
                raise InvalidInput(f"must be at most {TEXT_MAX} characters long", field)
        if len(labels) > LABELS_MAX or any(
            not key or len(key) > TEXT_MAX or len(value) > TEXT_MAX for key, value in labels.items()
        ):
            raise InvalidInput(
                f"at most {LABELS_MAX} labels, each a key of 1 to {TEXT_MAX} characters and a value of "
                f"at most {TEXT_MAX}",
                "hello.labels",
            )
        greeting = AgentHello(
            id=hello.id,
            version=hello.version,
            protocol=hello.protocol,
            capabilities=frozenset(hello.capabilities),
            labels=labels,
        )
        return greeting, hello.session

    async def _read(self, link: GrpcAgentLink, requests: AsyncIterator[agent_pb2.AgentMessage]) -> None:
        """Take what the agent sends until its stream ends; then the stream is over for the writer too."""
        try:
            async for message in requests:
                async with link.intake:
                    if not link.intake_closed:
                        await self._take_once(link, message)
            link.end("the agent's stream ended")
        except _ProtocolError as exc:
            refusal = InvalidInput(f"invalid message: {exc}")
            link.end(refusal.detail, _Ending.of(refusal))
        except _NotTaken as exc:
            log.warning("agent.heartbeat.not_taken", agent_id=link.hello.id, detail=exc.error.detail)
            link.end(exc.error.detail, _Ending.of(exc.error))
        except asyncio.CancelledError:
            link.end("the stream was cancelled")
            raise
        except grpc.aio.AbortError:
            link.end("the server ended the stream")  # the writer aborted it: its reason was set first
        except Exception:
            log.exception("agent.stream.failed", agent_id=link.hello.id)
            link.end("the server failed", _Ending(grpc.StatusCode.INTERNAL, "the server failed", "internal"))

    async def _take_once(self, link: GrpcAgentLink, message: agent_pb2.AgentMessage) -> None:
        """Take the message in, unless it is a numbered one of the agent's session taken in before (sent
        again on a new stream because its Received never came)."""
        seq = message.seq
        if not seq:
            await self._take(link, message)
            return
        if not self._was_taken(link, seq):
            await self._take(link, message)
            self._took(link, seq)
        link.taken = max(link.taken, seq)

    def _was_taken(self, link: GrpcAgentLink, seq: int) -> bool:
        return bool(link.session) and seq <= self._taken_in(link)

    def _took(self, link: GrpcAgentLink, seq: int) -> None:
        self._taken[link.hello.id] = (link.session, max(seq, self._taken_in(link)))

    def _taken_in(self, link: GrpcAgentLink) -> int:
        """The highest number of the link's session taken in (by this stream or an earlier one)."""
        session, taken = self._taken.get(link.hello.id, ("", 0))
        return taken if session == link.session else 0

    async def _take(self, link: GrpcAgentLink, message: agent_pb2.AgentMessage) -> None:
        body = message.WhichOneof("body")
        if body == "heartbeat":
            await self._heartbeat(link, message.heartbeat, kept=message.seq > 0)
        elif body == "result":
            link.take_result(message.result)
        elif body == "output":
            link.take_output(message.output.id, message.output.data)
        elif body == "log_batch":
            batch = message.log_batch
            link.take_output(batch.command_id, [(chunk.stream, chunk.line) for chunk in batch.lines])
        elif body == "inventory":
            inventory = message.inventory
            taken_at = _time(inventory.taken_at_ms) or datetime.now(UTC)
            self._feed(
                link,
                "inventory",
                lambda feed: feed.take_inventory(inventory.containers_json, inventory.images_json, taken_at),
            )
        elif body == "engine_event":
            event_json = message.engine_event.event_json
            self._feed(link, "engine_event", lambda feed: feed.take_event(event_json))
        elif body == "hello":
            raise _ProtocolError("a Hello is only sent first")
        # Anything else is a message of a newer protocol this server does not know: ignored.

    async def _heartbeat(
        self, link: GrpcAgentLink, heartbeat: agent_pb2.AgentHeartbeat, *, kept: bool
    ) -> None:
        """Record it; answer only when the agent's status or pace changed (Nomad's writes on change). One
        the database cannot take now is skipped, unless the agent `kept` it until acknowledged: then the
        stream ends (_NotTaken), and the agent sends it again."""
        beat = heartbeat.beat
        agent_id = link.hello.id
        if not beat.id:
            beat.id = agent_id
        try:
            if beat.id != agent_id:
                raise InvalidInput(f"is for agent {beat.id!r}, not this stream's", "id")
            measured_at = _time(heartbeat.measured_at_ms)
            ack = await self._fleet.record_heartbeat(to_command(beat, measured_at))
        except WorpenError as exc:
            if kept and isinstance(exc, Unavailable):
                raise _NotTaken(exc) from exc
            log.warning("agent.heartbeat.skipped", agent_id=agent_id, detail=exc.detail)
            return
        told = (ack.status, ack.next_heartbeat_seconds)
        if told != link.last_ack:
            link.last_ack = told
            try:
                link.send(agent_pb2.ControlMessage(pace=to_ack(ack)))
            except Unavailable:
                return

    @staticmethod
    def _feed(link: GrpcAgentLink, what: str, give: Callable[[EngineFeed], None]) -> None:
        if link.feed is None:
            return  # an agent without the docker capability: no engine to feed
        try:
            give(link.feed)
        except (WorpenError, ValueError) as exc:
            log.warning("agent.report.skipped", agent_id=link.hello.id, message=what, detail=str(exc))


def _metadata_id(context: Context) -> str:
    metadata = dict(context.invocation_metadata() or ())
    agent_id = metadata.get(AGENT_ID_KEY)
    if not isinstance(agent_id, str) or not agent_id:
        raise InvalidInput("the call's metadata must name the agent", AGENT_ID_KEY)
    check_agent_id(agent_id, AGENT_ID_KEY)
    return agent_id


def _time(unix_ms: int) -> datetime | None:
    """A time the agent sent (unix milliseconds); None when it sent none or one out of range."""
    if unix_ms <= 0:
        return None
    try:
        return datetime.fromtimestamp(unix_ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None
