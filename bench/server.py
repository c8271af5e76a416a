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
- When WORPEN_BENCH_SYNTHETIC_ENGINE is set, a synthetic container engine in place of Docker (node
  `bench`): its event stream is fed by `POST /bench/events` (container deaths, see SyntheticRuntime), its
  containers are always running and its restarts do nothing, so the rule engine's whole path (sandbox,
  storm protection, incidents, the plan applied through the use cases) runs with no real Docker action;
  `GET /bench/automation` reads the rule engine's progress.

Not part of the product; used by bench/heartbeat and bench/automation only. Run: python bench/server.py
(configured by WORPEN_* environment variables, like the CLI).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

import grpc
import msgspec
from litestar import get, post
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
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
from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerState,
    ContainerUsage,
    EngineEvent,
    EngineInfo,
    Image,
    LogLine,
    LogQuery,
    Pruned,
    PruneReport,
    PruneRequest,
    PullProgress,
    WorkloadSpec,
)
from worpen_core.containers.ports import TerminalChannel
from worpen_core.shared.errors import EngineFailed, InvalidInput, NotFound
from worpen_proto.v1 import fleet_pb2, fleet_pb2_grpc

RAW_PATH = "/bench/raw"
RAW_ANSWER = b'{"nextHeartbeatSeconds":10,"status":"ONLINE"}'
"""What the heartbeat route answers, byte for byte."""
GRPC_NOOP_SERVICE = "worpen.bench.v1.Bench"
GRPC_NOOP_METHOD = "Noop"
SYNTHETIC_NODE = "bench"
SYNTHETIC_IMAGE = "bench/synthetic:1"
SYNTHETIC_STARTED = datetime(2026, 1, 1, tzinfo=UTC)
FEED_TICK = 0.01
"""Seconds between two batches of a stream fed at a steady rate."""


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


class SyntheticRuntime:
    """A ContainerRuntime with no engine behind it: its event stream is what `feed` puts there (container
    deaths), and every container that died in it is running again by the time anyone looks (inspect,
    list), so a rule's restart, an incident's auto-resolve and the API's own checks all succeed at once.
    Deaths come without the kill event Docker sends before a requested stop: crashes, which fire rules."""

    def __init__(self, node: str = SYNTHETIC_NODE) -> None:
        self.node = node
        self._events: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._containers: dict[str, Container] = {}
        """By id and by name."""
        self.sent = 0
        self.restarts = 0

    def feed(self, count: int, rules: int, containers: int, every137: int) -> tuple[int, int]:
        """Queue the next `count` deaths of the sequence; which of it (first and last index). Death n is
        container n // rules % containers of rule n % rules, `svc-RR-K`; one in `every137` (spread over
        the rules) exits with 137, the others with 1 (0: none with 137)."""
        first = self.sent
        now = time.time_ns()
        for n in range(first, first + count):
            rule = n % rules
            name = f"svc-{rule:02d}-{n // rules % containers}"
            oom = every137 > 0 and (n // rules + rule) % every137 == 0
            container = self._known(name)
            attributes = {"name": name, "image": SYNTHETIC_IMAGE, "exitCode": "137" if oom else "1"}
            self._events.put_nowait(EngineEvent("container", "die", container.id, attributes, now))
        self.sent += count
        return first, self.sent - 1

    async def feed_steadily(self, count: int, per_second: float, **shape: int) -> None:
        """`count` deaths at `per_second`, in small batches as the clock says they are due."""
        started = time.monotonic()
        done = 0
        while done < count:
            due = min(count, int((time.monotonic() - started) * per_second) + 1)
            if due > done:
                self.feed(due - done, **shape)
                done = due
            await asyncio.sleep(FEED_TICK)

    def _known(self, name: str) -> Container:
        found = self._containers.get(name)
        if found is None:
            found = Container(
                id=hashlib.sha256(name.encode()).hexdigest(),
                name=name,
                image=SYNTHETIC_IMAGE,
                state=ContainerState.RUNNING,
                status="Up 1 second",
                node=self.node,
                created_at=SYNTHETIC_STARTED,
            )
            self._containers[name] = self._containers[found.id] = found
        return found

    def _find(self, ref: str) -> Container:
        found = self._containers.get(ref)
        if found is None:
            matches = {c.id: c for key, c in self._containers.items() if key.startswith(ref)}
            if len(matches) != 1:
                raise NotFound("container", ref)
            found = next(iter(matches.values()))
        return found

    async def info(self) -> EngineInfo:
        return EngineInfo("synthetic", "1.41", "linux", len(self._containers) // 2, 0)

    async def list_containers(self) -> list[Container]:
        return sorted({c.id: c for c in self._containers.values()}.values(), key=lambda c: c.name)

    async def inspect(self, ref: str) -> ContainerDetail:
        container = self._find(ref)
        return ContainerDetail(
            container, (), (), {}, "", "", "", "no", (), {}, 0, None, False, "", 1, SYNTHETIC_STARTED, None
        )

    async def usage(self, ref: str) -> ContainerUsage:
        self._find(ref)
        return ContainerUsage(0, time.time_ns(), 1)

    async def logs(self, ref: str, query: LogQuery) -> AsyncIterator[Sequence[LogLine]]:
        raise EngineFailed(f"node {self.node} synthetic engine", "containers here write no logs")

    async def start(self, ref: str) -> None:
        self._find(ref)

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        self._find(ref)

    async def restart(self, ref: str, grace_seconds: int | None) -> None:
        self._find(ref)
        self.restarts += 1

    async def remove(self, ref: str, *, force: bool, volumes: bool) -> None:
        raise EngineFailed(f"node {self.node} synthetic engine", "containers here cannot be removed")

    async def prune(self, request: PruneRequest) -> PruneReport:
        nothing = Pruned((), 0)
        return PruneReport(self.node, request.dry_run, nothing, nothing, nothing, nothing)

    async def list_images(self) -> list[Image]:
        return []

    async def pull(self, image: str) -> AsyncIterator[PullProgress]:
        raise EngineFailed(f"node {self.node} synthetic engine", "images cannot be pulled here")

    async def exec(self, ref: str, command: Sequence[str]) -> TerminalChannel:
        raise EngineFailed(f"node {self.node} synthetic engine", "there are no processes to run here")

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        return self._stream()

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        raise self._no_work()

    async def remove_volume(self, name: str) -> None:
        raise self._no_work()

    async def volumes(self, label: str) -> list[str]:
        return []

    async def create(self, spec: WorkloadSpec) -> str:
        raise self._no_work()

    async def put_archive(self, ref: str, path: str, archive: bytes) -> None:
        raise self._no_work()

    async def wait(self, ref: str) -> int:
        raise self._no_work()

    def _no_work(self) -> EngineFailed:
        return EngineFailed(f"node {self.node} synthetic engine", "pipelines do not run here")

    async def _stream(self) -> AsyncIterator[EngineEvent]:
        while True:
            yield await self._events.get()


class BenchEventsIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    count: int
    every137: int = 10
    rules: int = 50
    containers: int = 4
    per_second: float = 0.0
    """0: all at once (a burst); otherwise a steady stream at this rate."""


def _synthetic_routes(worpen: Worpen, runtime: SyntheticRuntime) -> list[HTTPRouteHandler]:
    """`POST /bench/events` feeds the synthetic engine; `GET /bench/automation` reads the rule engine."""
    feeding: set[asyncio.Task[None]] = set()

    @post("/bench/events", opt=requires(Permission.ADMIN), status_code=202)
    async def bench_events(data: BenchEventsIn) -> dict[str, int]:
        if data.count < 1 or data.rules < 1 or data.containers < 1 or data.every137 < 0:
            raise InvalidInput("count, rules and containers must be positive, every137 at least 0")
        shape = {"rules": data.rules, "containers": data.containers, "every137": data.every137}
        if data.per_second <= 0:
            first, last = runtime.feed(data.count, **shape)
            return {"first": first, "last": last}
        task = asyncio.create_task(runtime.feed_steadily(data.count, data.per_second, **shape))
        feeding.add(task)
        task.add_done_callback(feeding.discard)
        return {"first": runtime.sent, "last": runtime.sent + data.count - 1}

    @get("/bench/automation", opt=requires(Permission.ADMIN))
    async def bench_automation() -> dict[str, int]:
        engine = worpen.rule_engine
        newest = await worpen.journal.read(None, 1, frozenset({"ContainerDied"}))
        return {
            "eventsSeen": engine.events_seen,
            "runsRecorded": engine.runs_recorded,
            "cursor": engine.cursor(),
            "queued": engine.queued(),
            "lastDied": newest[-1].id if newest else 0,
            "fed": runtime.sent,
            "feeding": len(feeding),
            "restarts": runtime.restarts,
            "busDepth": worpen.event_queue_depth(),
        }

    return [bench_events, bench_automation]


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings)
    synthetic = SyntheticRuntime() if os.environ.get("WORPEN_BENCH_SYNTHETIC_ENGINE") else None
    worpen = bootstrap(settings, runtimes=None if synthetic is None else [synthetic])
    grpc_port = os.environ.get("WORPEN_BENCH_GRPC_PORT")
    if grpc_port:
        _serve_grpc(worpen, int(grpc_port))
    app = create_app(worpen)
    app.register(bench_noop)
    if synthetic is not None:
        for route in _synthetic_routes(worpen, synthetic):
            app.register(route)
    app.asgi_handler = RawNoop(app.asgi_handler)
    serve(app, settings, worpen.drain)


if __name__ == "__main__":
    main()
