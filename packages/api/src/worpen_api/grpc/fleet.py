"""The gRPC driving adapter: FleetService.ReportHeartbeat calls the same use case as the REST route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from worpen_api.error_codes import error_code
from worpen_core.access.model import ANONYMOUS_ADMIN, Principal
from worpen_core.access.service import Authenticator
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.readings import READINGS, Readings
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import InvalidInput, RateLimited, Unavailable, WorpenError
from worpen_proto.v1 import fleet_pb2, fleet_pb2_grpc

log = structlog.get_logger("worpen.grpc")

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


def to_command(message: fleet_pb2.Heartbeat) -> RecordHeartbeat:
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
        return fleet_pb2.HeartbeatAck(
            status=_TO_PROTO[ack.status], next_heartbeat_seconds=ack.next_heartbeat_seconds
        )

    async def _authenticate(self, context: grpc.aio.ServicerContext[object, object]) -> Principal:
        if self._authenticator is None:
            return ANONYMOUS_ADMIN
        client = context.peer().rsplit(":", 1)[0]  # "ipv4:10.0.0.7:53124": the host, not the port
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        return await self._authenticator.admit(None if authorization is None else str(authorization), client)

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext[object, object], exc: WorpenError) -> None:
        entry = error_code(exc)
        detail = f"{exc.field}: {exc.detail}" if isinstance(exc, InvalidInput) and exc.field else exc.detail
        if isinstance(exc, Unavailable | RateLimited):
            log.warning("grpc.refused", code=entry.grpc_status.name, detail=detail)
        context.set_trailing_metadata(((ERROR_CODE_KEY, entry.code),))
        await context.abort(entry.grpc_status, detail)


class GrpcFleetServer:
    """A grpc.aio server on the running event loop, beside the HTTP server."""

    def __init__(self, servicer_factory: Callable[[], FleetServicer], host: str, port: int) -> None:
        self._servicer_factory = servicer_factory
        self._address = f"{host}:{port}"
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 1024 * 1024)])
        fleet_pb2_grpc.add_FleetServiceServicer_to_server(self._servicer_factory(), server)
        port = server.add_insecure_port(self._address)
        await server.start()
        self._server = server
        log.info("grpc.listening", address=self._address, port=port)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
