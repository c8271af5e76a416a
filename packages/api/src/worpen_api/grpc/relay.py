"""Replica to replica (relay.proto): a command for an agent whose stream another replica holds travels to
that replica, which runs it on its own link to the agent and answers as that link would.

The holder serves AgentRelay on its gRPC server (AgentRelayServicer); the others reach it through a
RelayedAgentLink, core's AgentLink over the call, which raises the same errors as a local link
(CommandRefused, Unavailable naming the agent, TimedOut), so that HTTP answers are the same on every
replica. Calls carry a bearer derived from the secrets key all replicas share, never an API key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import grpc
import structlog

from worpen_api.grpc.fleet import Context
from worpen_core.agents.model import AgentHello, CommandRefused, StreamHolder
from worpen_core.agents.ports import AgentLink, AgentRegistry, CommandStream, LogChunks
from worpen_core.agents.service import Agents, dependency
from worpen_core.shared.errors import TimedOut, Unavailable, WorpenError
from worpen_proto.v1 import relay_pb2, relay_pb2_grpc

log = structlog.get_logger("worpen.relay")

INVENTORY = "relay.inventory"
"""The kind the holder answers itself: its inventory of the agent's node (see relay.proto)."""
CHANGING = frozenset(
    {
        "containers.start",
        "containers.stop",
        "containers.restart",
        "containers.remove",
        "system.prune",
        "workloads.create",
    }
)
"""Commands that change the node's containers: after one, the holder's listings wait for the inventory
that shows the change, as after its own."""
MARGIN_SECONDS = 5.0
"""How much longer than a command's own deadline the asking replica waits for the holder's answer: the
holder's TimedOut, with its message, arrives first."""
CHUNK_BYTES = 1024 * 1024
"""A command's data larger than this travels in pieces of this size (see RelayCall.data_follows): a
replica's gRPC server takes messages of at most 4 MiB, a pipeline's source archive may be far larger."""
OPEN_SECONDS = 10.0
"""How long the holder waits for a Stream call's first message."""
CHANNEL_OPTIONS = (
    # A holder's answer is as large as its agent's (an image listing, a big node's inventory); what is
    # sent is bounded by the holder's own limit on what it receives.
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)
"""The asking replica's channel to a holder: a holder that dies is noticed within the keepalive."""
REFUSED = "refused"
UNAVAILABLE = "unavailable"
TIMED_OUT = "timed_out"


def relay_token(secrets_key: bytes) -> str:
    """The bearer replicas present to each other: derived from the secrets key they share, so that only
    a replica of the same installation is served (and the key itself never travels)."""
    return hmac.new(secrets_key, b"worpen agent relay v1", hashlib.sha256).hexdigest()


@runtime_checkable
class _Inventoried(Protocol):
    """The runtime of an agent's engine on the holder (AgentContainerRuntime), as the relay uses it."""

    async def inventory(self) -> tuple[bytes, datetime]: ...

    def acted_elsewhere(self) -> None: ...


def _error(kind: str, message: str, code: str = "") -> relay_pb2.RelayResult:
    return relay_pb2.RelayResult(ok=False, error=relay_pb2.RelayError(kind=kind, code=code, message=message))


def _failure(exc: BaseException) -> relay_pb2.RelayResult:
    """What a local link raised, as the relay's answer (the asking replica raises it again)."""
    if isinstance(exc, CommandRefused):
        return _error(REFUSED, exc.message, exc.code)
    if isinstance(exc, TimedOut):
        return _error(TIMED_OUT, exc.detail)
    if isinstance(exc, Unavailable):
        return _error(UNAVAILABLE, exc.reason)
    if isinstance(exc, WorpenError):
        return _error(UNAVAILABLE, exc.detail)
    raise exc


def _seconds(timeout_ms: int) -> float | None:
    return None if timeout_ms <= 0 else timeout_ms / 1000


class AgentRelayServicer(relay_pb2_grpc.AgentRelayServicer):
    """Served by every replica: commands from the others for the agents whose streams this one holds."""

    def __init__(self, agents: Agents, token: str, replica_id: str) -> None:
        self._agents = agents
        self._authorization = f"Bearer {token}"
        self._replica_id = replica_id

    async def Call(self, request: relay_pb2.RelayCall, context: Context) -> relay_pb2.RelayResult:
        await self._authenticate(context)
        return await self._run(request, request.data)

    async def _run(self, request: relay_pb2.RelayCall, data: bytes) -> relay_pb2.RelayResult:
        """One command on the local link of the agent, answered as the relay answers."""
        link = self._agents.local_link(request.agent_id)
        if link is None:
            return self._not_held()
        try:
            if request.kind == INVENTORY:
                return await self._inventory(link)
            result = await link.call(
                request.kind,
                json.loads(request.params_json or b"{}"),
                data=data,
                timeout=_seconds(request.timeout_ms),
            )
        except (WorpenError, CommandRefused) as exc:
            return _failure(exc)
        if request.kind in CHANGING and isinstance(runtime := getattr(link, "feed", None), _Inventoried):
            runtime.acted_elsewhere()
        return relay_pb2.RelayResult(ok=True, result_json=json.dumps(result, separators=(",", ":")).encode())

    async def Stream(
        self, request_iterator: AsyncIterator[relay_pb2.RelayInput], context: Context
    ) -> AsyncIterator[relay_pb2.RelayOutput]:
        await self._authenticate(context)
        try:
            async with asyncio.timeout(OPEN_SECONDS):
                first = await anext(aiter(request_iterator), None)
        except TimeoutError:
            first = None
        if first is None or first.WhichOneof("body") != "open":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must open a command")
            return
        opening = first.open
        if opening.data_follows:
            pieces = [
                message.input async for message in request_iterator if message.WhichOneof("body") == "input"
            ]
            yield relay_pb2.RelayOutput(end=await self._run(opening, b"".join(pieces)))
            return
        link = self._agents.local_link(opening.agent_id)
        if link is None:
            yield relay_pb2.RelayOutput(end=self._not_held())
            return
        try:
            stream = await link.stream(
                opening.kind,
                json.loads(opening.params_json or b"{}"),
                timeout=_seconds(opening.timeout_ms) or self._agents.command_timeout,
            )
        except (WorpenError, CommandRefused) as exc:
            yield relay_pb2.RelayOutput(end=_failure(exc))
            return
        inputs = asyncio.create_task(_forward(request_iterator, stream), name=f"relay {opening.kind} input")
        try:
            yield relay_pb2.RelayOutput(opened=relay_pb2.RelayOpened())
            try:
                while (output := await stream.next()) is not None:
                    if isinstance(output, bytes):
                        yield relay_pb2.RelayOutput(output=output)
                    else:
                        lines = [relay_pb2.RelayLogLine(stream=kind, line=line) for kind, line in output]
                        yield relay_pb2.RelayOutput(log_batch=relay_pb2.RelayLogBatch(lines=lines))
                end = relay_pb2.RelayResult(ok=True, result_json=json.dumps(stream.result()).encode())
            except (WorpenError, CommandRefused) as exc:
                end = _failure(exc)
            yield relay_pb2.RelayOutput(end=end)
        finally:
            inputs.cancel()
            await stream.close()  # the asking replica left (or the command ended: then a no-op)

    async def _inventory(self, link: AgentLink) -> relay_pb2.RelayResult:
        runtime = getattr(link, "feed", None)
        if not isinstance(runtime, _Inventoried):
            return _error(UNAVAILABLE, "the agent serves no Docker engine")
        containers_json, taken_at = await runtime.inventory()
        taken_ms = int(taken_at.timestamp() * 1000)
        result = (
            b'{"containers":' + (containers_json or b"[]") + b',"takenAtMs":' + str(taken_ms).encode() + b"}"
        )
        return relay_pb2.RelayResult(ok=True, result_json=result)

    def _not_held(self) -> relay_pb2.RelayResult:
        return _error(UNAVAILABLE, f"the agent is not connected (to replica {self._replica_id} or any other)")

    async def _authenticate(self, context: Context) -> None:
        metadata = dict(context.invocation_metadata() or ())
        presented = str(metadata.get("authorization", ""))
        if not hmac.compare_digest(presented.encode(), self._authorization.encode()):
            log.warning("relay.refused", peer=context.peer())
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "not a replica of this installation: the relay takes the bearer derived from the shared "
                "secrets key (WORPEN_SECRETS_KEY), not an API key",
            )


async def _forward(requests: AsyncIterator[relay_pb2.RelayInput], stream: CommandStream) -> None:
    """An exec's or shell's input, from the asking replica to the command."""
    async for message in requests:
        if message.WhichOneof("body") == "input":
            await stream.write(message.input)


class RelayClient:
    """The asking side: one channel per replica it relays to, and links to the agents they hold."""

    def __init__(self, token: str, registry: AgentRegistry, *, tls_root: bytes | None = None) -> None:
        """`tls_root`: the certificate the replicas' gRPC servers present (when they serve TLS)."""
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._registry = registry
        self._tls_root = tls_root
        self._channels: dict[str, grpc.aio.Channel] = {}

    def link(self, holder: StreamHolder) -> RelayedAgentLink:
        return RelayedAgentLink(holder, self)

    def stub(self, address: str) -> relay_pb2_grpc.AgentRelayStub:
        channel = self._channels.get(address)
        if channel is None:
            if self._tls_root is None:
                channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            else:
                credentials = grpc.ssl_channel_credentials(self._tls_root)
                channel = grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
            self._channels[address] = channel
        return relay_pb2_grpc.AgentRelayStub(channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def unreachable(self, holder: StreamHolder) -> None:
        """The holder's address refuses: its row is stale (a replica that died), and goes."""
        log.warning(
            "relay.unreachable", agent_id=holder.agent_id, replica=holder.replica_id, address=holder.address
        )
        try:
            await self._registry.forget(holder)
        except WorpenError:
            return

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(channel.close() for channel in channels.values()))


class RelayedAgentLink:
    """Core's AgentLink to an agent whose stream another replica holds, through that replica."""

    def __init__(self, holder: StreamHolder, client: RelayClient) -> None:
        self.hello: AgentHello = holder.connection.hello
        self._holder = holder
        self._client = client
        self._dependency = dependency(self.hello.id)
        self._closed: str | None = None

    @property
    def open(self) -> bool:
        return self._closed is None

    async def call(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        data: bytes = b"",
        timeout: float | None,  # noqa: ASYNC109 (core's AgentLink: the command's own deadline)
    ) -> Any:
        self._check()
        request = relay_pb2.RelayCall(
            agent_id=self.hello.id,
            kind=kind,
            params_json=json.dumps(params, separators=(",", ":")).encode(),
            data=data,
            timeout_ms=0 if timeout is None else max(1, int(timeout * 1000)),
        )
        stub = self._client.stub(self._holder.address)
        within = None if timeout is None else timeout + MARGIN_SECONDS
        try:
            if len(data) > CHUNK_BYTES:
                answer = await self._call_in_pieces(stub, request, within)
            else:
                answer = await stub.Call(request, metadata=self._client.metadata, timeout=within)
        except grpc.aio.AioRpcError as exc:
            raise await self.transport_error(exc, kind, timeout) from None
        if not answer.ok:
            raise self.refusal(answer.error)
        return json.loads(answer.result_json or b"{}")

    async def _call_in_pieces(
        self, stub: relay_pb2_grpc.AgentRelayStub, request: relay_pb2.RelayCall, within: float | None
    ) -> relay_pb2.RelayResult:
        """A command whose data is too large for one message: sent in pieces over a Stream call."""
        data = request.data
        opening = relay_pb2.RelayCall()
        opening.CopyFrom(request)
        opening.data = b""
        opening.data_follows = True
        call = stub.Stream(metadata=self._client.metadata, timeout=within)
        try:
            await call.write(relay_pb2.RelayInput(open=opening))
            for start in range(0, len(data), CHUNK_BYTES):
                await call.write(relay_pb2.RelayInput(input=data[start : start + CHUNK_BYTES]))
            await call.done_writing()
            answer = await call.read()
        except asyncio.CancelledError:
            call.cancel()
            raise
        if answer is grpc.aio.EOF or answer.WhichOneof("body") != "end":
            raise Unavailable(
                self._dependency, f"the replica holding its stream did not answer {request.kind}"
            )
        end: relay_pb2.RelayResult = answer.end
        return end

    async def stream(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 (core's AgentLink: bounds the wait for the first message)
    ) -> CommandStream:
        self._check()
        call = self._client.stub(self._holder.address).Stream(metadata=self._client.metadata)
        opening = relay_pb2.RelayCall(
            agent_id=self.hello.id,
            kind=kind,
            params_json=json.dumps(params, separators=(",", ":")).encode(),
            timeout_ms=max(1, int(timeout * 1000)),
        )
        try:
            async with asyncio.timeout(timeout + MARGIN_SECONDS):
                await call.write(relay_pb2.RelayInput(open=opening))
                first = await call.read()
        except TimeoutError:
            call.cancel()
            raise TimedOut(f"{self._dependency} did not answer {kind} within {timeout:g} s") from None
        except grpc.aio.AioRpcError as exc:
            raise await self.transport_error(exc, kind, timeout) from None
        except asyncio.CancelledError:
            call.cancel()
            raise
        if first is grpc.aio.EOF:
            raise Unavailable(self._dependency, f"the replica holding its stream ended {kind}")
        body = first.WhichOneof("body")
        if body == "end":
            raise self.refusal(first.end)
        if body != "opened":
            call.cancel()
            raise Unavailable(self._dependency, f"the replica holding its stream answered {kind} with {body}")
        return _RelayedStream(self, call, kind)

    async def close(self, reason: str) -> None:
        """Stop relaying to the agent (the stream itself is the holder's to close)."""
        if self._closed is None:
            self._closed = reason

    def _check(self) -> None:
        if self._closed is not None:
            raise Unavailable(self._dependency, "the agent disconnected")

    def refusal(self, error: relay_pb2.RelayError) -> Exception:
        """The holder's answer as the error its own link raised."""
        if error.kind == REFUSED:
            return CommandRefused(error.code, error.message)
        if error.kind == TIMED_OUT:
            return TimedOut(error.message)
        return Unavailable(self._dependency, error.message or "the agent is not connected")

    async def transport_error(
        self,
        exc: grpc.aio.AioRpcError,
        kind: str,
        timeout: float | None,  # noqa: ASYNC109 (reported)
    ) -> WorpenError:
        """A failed call to the holder itself (not the agent's answer)."""
        holder = self._holder
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            within = "" if timeout is None else f" within {timeout:g} s"
            return TimedOut(f"{self._dependency} did not answer {kind}{within}")
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            self._closed = "its replica cannot be reached"
            await self._client.unreachable(holder)
            return Unavailable(
                self._dependency,
                f"replica {holder.replica_id} ({holder.address}), which held its stream, cannot be reached",
            )
        if exc.code() == grpc.StatusCode.CANCELLED:
            return Unavailable(self._dependency, f"replica {holder.replica_id} cancelled {kind}")
        return Unavailable(
            self._dependency,
            f"replica {holder.replica_id} ({holder.address}) refused the relay: {exc.details()}",
        )


class _RelayedStream:
    """A streaming command on the holder, as core's CommandStream."""

    def __init__(self, link: RelayedAgentLink, call: Any, kind: str) -> None:
        self._link = link
        self._call = call
        self._kind = kind
        self._ended = False
        self._result: Any = None

    async def next(self) -> bytes | LogChunks | None:
        if self._ended:
            return None
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            self._ended = True
            raise await self._link.transport_error(exc, self._kind, None) from None
        if message is grpc.aio.EOF:
            self._ended = True
            raise Unavailable(
                dependency(self._link.hello.id), f"the replica holding its stream ended {self._kind}"
            )
        body = message.WhichOneof("body")
        if body == "output":
            output: bytes = message.output
            return output
        if body == "log_batch":
            return [(line.stream, line.line) for line in message.log_batch.lines]
        if body == "end":
            self._ended = True
            if not message.end.ok:
                raise self._link.refusal(message.end.error)
            self._result = json.loads(message.end.result_json or b"{}")
            return None
        return b""

    async def write(self, data: bytes) -> None:
        if self._ended:
            return
        try:
            await self._call.write(relay_pb2.RelayInput(input=data))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return  # the command ended: input is dropped, as a closed pipe's would be

    def result(self) -> Any:
        return self._result

    async def close(self) -> None:
        if not self._ended:
            self._ended = True
            self._call.cancel()
