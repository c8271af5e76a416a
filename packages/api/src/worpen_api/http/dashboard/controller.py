"""The dashboard over HTTP: headline figures, services, network and load series."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from worpen_api.http.dashboard.dto import LoadOut, NetworkOut, ServiceOut, StatsOut
from worpen_api.http.errors import documented
from worpen_api.http.security import requires
from worpen_api.http.wire import AgentId
from worpen_core.access.model import Permission
from worpen_core.dashboard.service import Dashboard
from worpen_core.dashboard.services import ServiceBoard
from worpen_core.telemetry.model import MAX_POINTS, Range
from worpen_core.telemetry.service import Telemetry

Points = Annotated[
    int,
    QueryParameter(
        ge=1, le=MAX_POINTS, description=f"At most this many points per series (at most {MAX_POINTS})"
    ),
]


class DashboardController(Controller):
    path = "/api/v1/dashboard"
    tags = ["dashboard"]
    opt = requires(Permission.READ)

    @get(
        "/stats",
        operation_id="dashboardStats",
        responses=documented(503),
        summary="Headline figures: active nodes, throughput, average load, security score",
        description="`active_nodes`: agents ONLINE, CRITICAL or HEALING. `throughput`: heartbeats, log lines "
        "and events ingested per second over the last minute. `avg_load`: mean cpu of the active agents "
        "(`n/a` when none is). `security_score`: 100 less the penalties itemised in `detail` (offline agents "
        "5 each up to 25; agents on a lower version than the fleet's newest 2 each up to 20; failed "
        "authentications in the last hour 1 per started ten up to 15; active admin keys without expiry 5 "
        "each up to 15; authentication switched off 50). Values are strings, as the cockpit shows them.",
    )
    async def stats(self, dashboard: NamedDependency[Dashboard]) -> StatsOut:
        return StatsOut.of(await dashboard.stats())

    @get(
        "/services",
        operation_id="dashboardServices",
        responses=documented(),
        summary="Services: containers grouped by their Compose or Swarm service",
        description="A container's service is its `com.docker.compose.service` (or Swarm service) label, "
        "else its name less a replica suffix (`web-2`, `web_2`, `web.2.x1`). `status`: HEALTHY when every "
        "container runs and passes (or has no) health check, CRITICAL when none does, WARNING otherwise. "
        "`latency`: mean duration in ms of the running containers' latest health checks (null without "
        "any). `load`: mean CPU of the running containers as `docker stats` shows it (100 = one core). The "
        "engines are sampled in the background (WORPEN_SERVICE_SAMPLE_INTERVAL), never per request, and "
        "only while the services are read (a read after five minutes without one starts the sampling "
        "again); load is null until two samples were taken.",
    )
    async def services(self, services: NamedDependency[ServiceBoard]) -> list[ServiceOut]:
        return [ServiceOut.of(service) for service in services.read()]

    @get(
        "/network",
        operation_id="dashboardNetwork",
        responses=documented(404, 422, 503),
        summary="Network traffic in bytes/s, summed over the fleet or of one node",
        description="Buckets from the telemetry rollups (1-minute buckets up to a day, then 1-hour ones, "
        "merged so that no series has more than `points`), each starting at its timestamp; only complete "
        "buckets are shown. Rates come from the agents' cumulative counters, across counter resets (an "
        "agent restart counts from zero) and never across an agent's offline time. null: no data.",
    )
    async def network(
        self,
        telemetry: NamedDependency[Telemetry],
        range: FromQuery[Range] = Range.HOUR,  # the cockpit's parameter name
        node: Annotated[AgentId | None, QueryParameter(description="Only this agent")] = None,
        points: Points = MAX_POINTS,
    ) -> NetworkOut:
        return NetworkOut.of(await telemetry.network(range, node, points))

    @get(
        "/load",
        operation_id="dashboardLoad",
        responses=documented(422, 503),
        summary="The fleet's mean cpu and its forecast",
        description="`actual`: the fleet's mean cpu per bucket from the rollups. `predicted`: a forecast "
        "from history (Holt-Winters, additive, with a daily season once two days of hourly history exist; "
        "Holt's linear trend before that), one step ahead at each past bucket and extending a quarter of "
        "the range past now, where `actual` is null.",
    )
    async def load(
        self,
        telemetry: NamedDependency[Telemetry],
        range: FromQuery[Range] = Range.DAY,  # the cockpit's parameter name
        points: Points = MAX_POINTS,
    ) -> LoadOut:
        return LoadOut.of(await telemetry.load(range, points))
