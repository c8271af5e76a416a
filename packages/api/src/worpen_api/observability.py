"""Structured logs (structlog) and Prometheus metrics, with one ASGI middleware that times every request."""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
import time
from collections.abc import Iterator

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worpen_api.runtime import Worpen
from worpen_api.settings import Settings

log = structlog.get_logger("worpen.http")

UNMATCHED_ROUTE = "unmatched"
"""The route label of every request that no route took (unknown paths, CORS preflights): one label however
many paths a scanner tries, so the metrics' cardinality stays bounded."""
WEBSOCKET = "WEBSOCKET"
"""The method label of a WebSocket handshake."""
ROUTINE = "worpen.routine"


_encoder = msgspec.json.Encoder()


def _json(event: object, **_: object) -> str:
    return _encoder.encode(event).decode()


def configure_logging(settings: Settings) -> None:
    """JSON lines when stderr is not a terminal (or WORPEN_LOG_FORMAT=json), readable lines otherwise.
    Libraries that log through the standard library (uvicorn, alembic) are rendered the same way."""
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(_json) if as_json else structlog.dev.ConsoleRenderer()
    )
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line (PrintLogger writes the newline apart): a line logged meanwhile by another
        # thread through the standard library (aiosqlite's, uvicorn's) cannot land inside it.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


class FleetCollector(Collector):
    """Gauges and counters read from the live fleet at scrape time."""

    def __init__(self, worpen: Worpen) -> None:
        self._worpen = worpen

    def collect(self) -> Iterator[Metric]:
        fleet = self._worpen.fleet
        heartbeats = CounterMetricFamily("worpen_heartbeats_ingested", "Heartbeats accepted (REST and gRPC)")
        heartbeats.add_metric([], fleet.heartbeats_ingested)
        yield heartbeats
        agents = GaugeMetricFamily("worpen_agents", "Agents by status", labels=["status"])
        for status, count in fleet.count_by_status().items():
            agents.add_metric([status.value], count)
        yield agents
        depth = GaugeMetricFamily("worpen_event_bus_queue_depth", "Events waiting for delivery")
        depth.add_metric([], self._worpen.event_queue_depth())
        yield depth
        buffered = GaugeMetricFamily("worpen_telemetry_buffered_samples", "Samples waiting to be written")
        buffered.add_metric([], fleet.buffered_samples)
        yield buffered
        dropped = CounterMetricFamily(
            "worpen_telemetry_dropped_samples", "Samples dropped, oldest first, while the buffer was full"
        )
        dropped.add_metric([], fleet.samples_dropped)
        yield dropped
        engines = GaugeMetricFamily(
            "worpen_docker_engine_up", "1 when Worpen reaches the node's Docker engine", labels=["node"]
        )
        for engine in self._worpen.containers.engines():
            engines.add_metric([engine.node], 1 if engine.available else 0)
        yield engines
        terminals = GaugeMetricFamily("worpen_terminal_sessions", "Open terminal sessions")
        terminals.add_metric([], len(self._worpen.containers.terminals()))
        yield terminals
        leader = GaugeMetricFamily(
            "worpen_leader", "1 when this replica leads: it runs the singleton jobs (sweep, rules, ...)"
        )
        leader.add_metric([], 1 if self._worpen.leading else 0)
        yield leader
        yield from self._journal_and_log()
        yield from self._automation()
        yield from self._pipelines()
        yield from self._agents()

    def _agents(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "worpen_agents_connected", "Agents connected over the command channel (gRPC streams)"
        )
        connected.add_metric([], len(self._worpen.agents.connections()))
        yield connected
        commands = CounterMetricFamily(
            "worpen_agent_commands",
            "Commands sent to agents, by kind and outcome",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), count in sorted(self._worpen.agent_commands.items()):
            commands.add_metric([kind, outcome], count)
        yield commands

    def _pipelines(self) -> Iterator[Metric]:
        executor = self._worpen.pipeline_executor
        driven = GaugeMetricFamily("worpen_pipeline_runs_driven", "Pipeline runs this server drives now")
        driven.add_metric([], executor.running)
        yield driven
        failures = CounterMetricFamily(
            "worpen_pipeline_failures",
            "Unexpected errors the pipeline executor survived (a stage or run ERROR)",
        )
        failures.add_metric([], executor.failures)
        yield failures
        followers = GaugeMetricFamily("worpen_pipeline_log_followers", "Clients following a stage's log")
        followers.add_metric([], executor.followers)
        yield followers

    def _automation(self) -> Iterator[Metric]:
        engine = self._worpen.rule_engine
        seen = CounterMetricFamily(
            "worpen_automation_events", "Journal events of a trigger's type the rule engine took in"
        )
        seen.add_metric([], engine.events_seen)
        yield seen
        runs = CounterMetricFamily("worpen_automation_runs", "Rule runs recorded (any outcome)")
        runs.add_metric([], engine.runs_recorded)
        yield runs
        failures = CounterMetricFamily(
            "worpen_automation_failures", "Occurrences a rule's worker could not handle (unexpected errors)"
        )
        failures.add_metric([], engine.failures)
        yield failures
        refused = CounterMetricFamily(
            "worpen_automation_claims_refused",
            "Runs not applied because the database already held one of that rule for that event"
            " (another leadership term took it)",
        )
        refused.add_metric([], engine.claims_refused)
        yield refused
        queued = GaugeMetricFamily("worpen_automation_queued", "Occurrences waiting for their rule's worker")
        queued.add_metric([], engine.queued())
        yield queued

    def _journal_and_log(self) -> Iterator[Metric]:
        logs = self._worpen.logs
        recorded = CounterMetricFamily("worpen_events_recorded", "Domain events committed to the journal")
        recorded.add_metric([], self._worpen.journal.recorded)
        yield recorded
        shipped = CounterMetricFamily(
            "worpen_log_lines_ingested", "Log lines shipped by agents and committed"
        )
        shipped.add_metric([], logs.lines_ingested)
        yield shipped
        lost = CounterMetricFamily(
            "worpen_events_dropped", "Events lost because the database could not be written for too long"
        )
        lost.add_metric([], logs.events_dropped)
        yield lost
        followers = GaugeMetricFamily(
            "worpen_stream_followers", "Clients following a live stream", labels=["stream"]
        )
        followers.add_metric(["events"], self._worpen.journal.followers)
        followers.add_metric(["logs"], logs.followers)
        yield followers


class Metrics:
    """A registry per app (no global state), with the HTTP metrics the middleware records."""

    def __init__(self, worpen: Worpen) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "worpen_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "worpen_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.registry.register(FleetCollector(worpen))
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Counts a request and observes its latency. Each label set is looked up once (methods, route
        templates and statuses are bounded sets), as `labels()` costs more than the counting."""
        series = self._series.get((method, route, status))
        if series is None:
            series = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._series[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)


def mark_routine(scope: Scope) -> None:
    """Says that this request changed nothing an operator needs to read about (a heartbeat that neither
    registered an agent nor changed its status): its request log line is written at debug level."""
    scope["state"][ROUTINE] = True


class RequestIds:
    """Unique request ids without a system call per request: a random prefix per process, then a count."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._count = itertools.count(1)

    def __call__(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id" and 0 < len(value) <= 64 and value.isascii():
                return value.decode()
        return f"{self._prefix}-{next(self._count):x}"


class RequestObserver:
    """Gives every HTTP request an id (X-Request-ID), then logs it and records its metrics; a WebSocket
    is observed once its handshake is decided (accepted: 101; refused: the close code, e.g. 4401).

    It wraps the application's whole ASGI handler, outside Litestar's CORS, routing and exception handling,
    so it also sees what never reaches a route: unknown paths (labelled UNMATCHED_ROUTE), CORS preflights
    and refused WebSockets."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics
        self._request_id = RequestIds()
        self._log_routine = log.is_enabled_for(logging.DEBUG)  # the level is set once, before the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = self._request_id(scope)
        if scope["type"] == ScopeType.WEBSOCKET:
            await self._handshake(scope, receive, send, started, request_id)
            return
        header = (b"x-request-id", request_id.encode())
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self._app(scope, receive, observed_send)
        finally:
            self._observe(scope, scope["method"], status, started, request_id)

    async def _handshake(
        self, scope: Scope, receive: Receive, send: Send, started: float, request_id: str
    ) -> None:
        decided = False

        async def observed_send(message: Message) -> None:
            nonlocal decided
            if not decided and message["type"] == "websocket.accept":
                decided = True
                self._observe(scope, WEBSOCKET, 101, started, request_id)
            elif not decided and message["type"] == "websocket.close":
                decided = True
                self._observe(scope, WEBSOCKET, message.get("code", 1000), started, request_id)
            await send(message)

        try:
            await self._app(scope, receive, observed_send)
        finally:
            if not decided:
                self._observe(scope, WEBSOCKET, 500, started, request_id)

    def _observe(self, scope: Scope, method: str, status: int, started: float, request_id: str) -> None:
        duration = time.perf_counter() - started
        self._metrics.record(method, scope.get("path_template") or UNMATCHED_ROUTE, status, duration)
        routine = scope["state"].get(ROUTINE, False)
        if routine and not self._log_routine:
            return
        (log.debug if routine else log.info)(
            "request",
            request_id=request_id,
            method=method,
            path=scope["path"],
            status=status,
            duration_ms=round(duration * 1000, 3),
        )
