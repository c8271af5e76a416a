"""The gRPC driving adapter: FleetService.ReportHeartbeat calls the same use case as the REST route; the
server also serves the agents' command channel (grpc/agents.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import structlog
from google.protobuf.message import Message

from worpen_api.error_codes import error_code
from worpen_core.access.model import ANONYMOUS_ADMIN, Principal
from worpen_core.access.service import Authenticator
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.readings import READINGS, Readings
from worpen_core.fleet.service import Fleet, HeartbeatAck
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import InvalidInput, RateLimited, Unavailable, WorpenError
from worpen_proto.v1 import agent_pb2_grpc, fleet_pb2, fleet_pb2_grpc, relay_pb2_grpc

if TYPE_CHECKING:
    from worpen_api.grpc.agents import AgentChannelServicer
    from worpen_api.grpc.relay import AgentRelayServicer

log = structlog.get_logger("worpen.grpc")

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

ERROR_CODE_KEY = "worpen-error-code"
"""The trailing metadata that carries an error's code (worpen_api.error_codes), as HTTP's body does."""
_FROM_PROTO = {
    fleet_pb2.AGENT_STATUS_UNSPECIFIED: AgentStatus.ONLINE,
    fleet_pb2.AGENT_STATUS_ONLINE: AgentStatus.ONLINE,
    fleet_pb2.AGENT_STATUS_OFFLINE: AgentStatus.OFFLINE,
    fleet_pb2.AGENT_STATUS_CRITICAL: AgentStatus.CRITICAL,
    fleet_pb2.AGENT_STATUS_HEALING: AgentStatus.HEALING,
}
_TO_PROTO = {
    status: code for code, status in _FROM_PROTO.items() if code != fleet_pb2.AGENT_STATUS_UNSPECIFIED
}


def to_command(message: fleet_pb2.Heartbeat, measured_at: datetime | None = None) -> RecordHeartbeat:
    """`measured_at`: when the readings were taken, for a heartbeat that says so (the agent's stream)."""
    status = _FROM_PROTO.get(message.status)
    if status is None:
        raise InvalidInput(f"unknown status {message.status}", "status")
    return RecordHeartbeat(
        agent_id=message.id,
        readings=Readings(*(_field(message, reading.name, reading.required) for reading in READINGS)),
        status=status,
        name=_field(message, "name"),
        ip=_field(message, "ip"),
        os=_field(message, "os"),
        version=_field(message, "version"),
        peers=tuple(message.peers),
        measured_at=measured_at,
    )


def to_ack(ack: HeartbeatAck) -> fleet_pb2.HeartbeatAck:
    return fleet_pb2.HeartbeatAck(
        status=_TO_PROTO[ack.status], next_heartbeat_seconds=ack.next_heartbeat_seconds
    )


def _field(message: Message, name: str, required: bool = False) -> Any:
    """A field of the message; None for an optional one the agent did not set (proto3 presence)."""
    return getattr(message, name) if required or message.HasField(name) else None


class FleetServicer(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(self, fleet: Fleet, authenticator: Authenticator | None) -> None:
        """`authenticator` None means authentication is off (development on loopback only)."""
        self._fleet = fleet
        self._authenticator = authenticator

    async def ReportHeartbeat(
        self, request: fleet_pb2.Heartbeat, context: grpc.aio.ServicerContext[object, object]
    ) -> fleet_pb2.HeartbeatAck:
        try:
            principal = await self._authenticate(context)
            command = to_command(request)
            principal.authorize_report(command.agent_id)
            ack = await self._fleet.record_heartbeat(command)
        except WorpenError as exc:
            await self._abort(context, exc)
            raise AssertionError("unreachable: abort raises") from exc
        return to_ack(ack)

    async def _authenticate(self, context: grpc.aio.ServicerContext[object, object]) -> Principal:
        return await authenticate(context, self._authenticator)

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext[object, object], exc: WorpenError) -> None:
        await abort(context, exc)


async def authenticate(context: Context, authenticator: Authenticator | None) -> Principal:
    """The caller of a call, from its `authorization` metadata; everyone is admin with `authenticator`
    None (authentication off)."""
    if authenticator is None:
        return ANONYMOUS_ADMIN
    client = context.peer().rsplit(":", 1)[0]  # "ipv4:10.0.0.7:53124": the host, not the port
    metadata = dict(context.invocation_metadata() or ())
    authorization = metadata.get("authorization")
    return await authenticator.admit(None if authorization is None else str(authorization), client)


async def abort(context: Context, exc: WorpenError) -> None:
    """End the call with the error's gRPC status and its code in the `worpen-error-code` trailer."""
    entry = error_code(exc)
    detail = f"{exc.field}: {exc.detail}" if isinstance(exc, InvalidInput) and exc.field else exc.detail
    if isinstance(exc, Unavailable | RateLimited):
        log.warning("grpc.refused", code=entry.grpc_status.name, detail=detail)
    context.set_trailing_metadata(((ERROR_CODE_KEY, entry.code),))
    await context.abort(entry.grpc_status, detail)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The gRPC server's certificate chain and private key (PEM)."""

    cert_file: str
    key_file: str

    def credentials(self) -> grpc.ServerCredentials:
        with open(self.key_file, "rb") as key, open(self.cert_file, "rb") as cert:
            return grpc.ssl_server_credentials([(key.read(), cert.read())])


KEEPALIVE_SECONDS = 10
"""The server pings every connection this often and drops it when a ping goes unanswered for
KEEPALIVE_TIMEOUT_SECONDS: an agent that stopped (SIGSTOP) or was cut off loses its stream."""
KEEPALIVE_TIMEOUT_SECONDS = 5
CLIENT_PING_SECONDS = 5
"""The shortest interval between a client's own keepalive pings that the server tolerates."""
MAX_RECEIVE_BYTES = 4 * 1024 * 1024
"""An agent's largest message: the inventory of a big node (log batches are at most 1 MiB)."""


class GrpcFleetServer:
    """A grpc.aio server on the running event loop, beside the HTTP server: FleetService and, when given,
    the agents' AgentChannel; over TLS when given a certificate."""

    def __init__(
        self,
        servicer_factory: Callable[[], FleetServicer],
        host: str,
        port: int,
        *,
        agent_channel: AgentChannelServicer | None = None,
        agent_relay: AgentRelayServicer | None = None,
        tls: ServerTls | None = None,
        max_send_bytes: int = MAX_RECEIVE_BYTES,
    ) -> None:
        """`max_send_bytes`: the largest command the server sends (a pipeline's source archive).
        `agent_relay`: with replicas, the other replicas' commands for the agents this one holds."""
        self._servicer_factory = servicer_factory
        self._agent_channel = agent_channel
        self._agent_relay = agent_relay
        self._tls = tls
        self._max_send_bytes = max_send_bytes
        self._address = f"{host}:{port}"
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                ("grpc.max_send_message_length", self._max_send_bytes),
                ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_SECONDS * 1000),
                # Keep pinging a stream on which nothing is sent (an idle agent): the default stops after 2.
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", CLIENT_PING_SECONDS * 1000),
            ]
        )
        fleet_pb2_grpc.add_FleetServiceServicer_to_server(self._servicer_factory(), server)
        if self._agent_channel is not None:
            agent_pb2_grpc.add_AgentChannelServicer_to_server(self._agent_channel, server)
        if self._agent_relay is not None:
            relay_pb2_grpc.add_AgentRelayServicer_to_server(self._agent_relay, server)
        if self._tls is None:
            port = server.add_insecure_port(self._address)
        else:
            port = server.add_secure_port(self._address, self._tls.credentials())
        await server.start()
        self._server = server
        log.info("grpc.listening", address=self._address, port=port, tls=self._tls is not None)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            if self._agent_channel is not None:
                await self._agent_channel.close_all("the server is shutting down")
            await self._server.stop(grace)
            self._server = None
