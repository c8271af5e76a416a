"""Benchmark server: the real Worpen app plus the floors it is measured against, served like `worpen serve`.

Built and served exactly as `worpen serve` does it (settings from the environment, configure_logging,
bootstrap, create_app, `worpen_api.cli.serve`), with:

- `POST /bench/noop`: a Litestar handler registered on the app. It sits behind the same middleware
  (request observer, API-key authentication) and needs the same permission as the heartbeat route, and
  does nothing: the floor of an authenticated Litestar route.
- `POST /bench/raw`: a raw ASGI no-op in front of everything (Litestar included), under the same uvicorn
  in the same process: it reads the body and answers 202 with a body the size of a heartbeat's answer.
  The ceiling of this server on this machine.
- When WORPEN_BENCH_GRPC_PORT is set, a gRPC server on that port in the same process and event loop,
  serving `worpen.v1.FleetService` with the product's servicer (FleetServicer, same fleet and
  authenticator) next to `/worpen.bench.v1.Bench/Noop`, a unary method that decodes the same Heartbeat
  message and answers a constant HeartbeatAck without authenticating or doing anything else.

Not part of the product; used by bench/heartbeat only. Run: python bench/server.py
(configured by WORPEN_* environment variables, like the CLI).
"""

from __future__ import annotations

import os

import grpc
from litestar import post
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from worpen_api.app import create_app
from worpen_api.bootstrap import bootstrap
from worpen_api.cli import serve
from worpen_api.grpc.fleet import FleetServicer
from worpen_api.http.security import requires
from worpen_api.observability import configure_logging
from worpen_api.runtime import Worpen
from worpen_api.settings import Settings
from worpen_core.access.model import Permission
from worpen_proto.v1 import fleet_pb2, fleet_pb2_grpc

RAW_PATH = "/bench/raw"
RAW_ANSWER = b'{"nextHeartbeatSeconds":10,"status":"ONLINE"}'
"""What the heartbeat route answers, byte for byte."""
GRPC_NOOP_SERVICE = "worpen.bench.v1.Bench"
GRPC_NOOP_METHOD = "Noop"


@post("/bench/noop", opt=requires(Permission.REPORT), status_code=202)
async def bench_noop() -> None:
    """Same auth, same middleware, same permission as POST /api/v1/internal/heartbeat; no work."""
    return None


class RawNoop:
    """`POST /bench/raw` answered by plain ASGI before anything else sees it; everything else goes on."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] != RAW_PATH:
            await self._app(scope, receive, send)
            return
        more = True
        while more:
            message = await receive()
            more = bool(message.get("more_body", False))
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(RAW_ANSWER)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": RAW_ANSWER, "more_body": False})


async def _grpc_noop(_request: fleet_pb2.Heartbeat, _context: object) -> fleet_pb2.HeartbeatAck:
    return fleet_pb2.HeartbeatAck(status=fleet_pb2.AGENT_STATUS_ONLINE, next_heartbeat_seconds=10)


def _serve_grpc(worpen: Worpen, port: int) -> None:
    """FleetService (the product's servicer) and the no-op on one grpc.aio server, started and stopped
    with Worpen."""
    servers: list[grpc.aio.Server] = []

    async def start() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 1024 * 1024)])
        servicer = FleetServicer(worpen.fleet, worpen.authenticator)
        fleet_pb2_grpc.add_FleetServiceServicer_to_server(servicer, server)
        noop = grpc.unary_unary_rpc_method_handler(
            _grpc_noop,
            request_deserializer=fleet_pb2.Heartbeat.FromString,
            response_serializer=fleet_pb2.HeartbeatAck.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(GRPC_NOOP_SERVICE, {GRPC_NOOP_METHOD: noop}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        servers.append(server)

    async def stop() -> None:
        while servers:
            await servers.pop().stop(5.0)

    worpen.on_start.append(start)
    worpen.stop_intake.append(stop)


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings)
    worpen = bootstrap(settings)
    grpc_port = os.environ.get("WORPEN_BENCH_GRPC_PORT")
    if grpc_port:
        _serve_grpc(worpen, int(grpc_port))
    app = create_app(worpen)
    app.register(bench_noop)
    app.asgi_handler = RawNoop(app.asgi_handler)
    serve(app, settings, worpen.drain)


if __name__ == "__main__":
    main()
