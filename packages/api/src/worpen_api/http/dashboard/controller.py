"""The dashboard over HTTP: headline figures, services, network and load series."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from worpen_api.http.dashboard.dto import ServiceOut, StatsOut
from worpen_api.http.errors import documented
from worpen_api.http.security import requires
from worpen_core.access.model import Permission
from worpen_core.dashboard.service import Dashboard
from worpen_core.dashboard.services import ServiceBoard


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
        summary="Services: containers grouped by their Compose or Swarm service",
        description="A container's service is its `com.docker.compose.service` (or Swarm service) label, "
        "else its name less a replica suffix (`web-2`, `web_2`, `web.2.x1`). `status`: HEALTHY when every "
        "container runs and passes (or has no) health check, CRITICAL when none does, WARNING otherwise. "
        "`latency`: mean duration in ms of the running containers' latest health checks (null without "
        "any). `load`: mean CPU of the running containers as `docker stats` shows it (100 = one core). The "
        "engines are sampled in the background (WORPEN_SERVICE_SAMPLE_INTERVAL), never per request; load "
        "is null until two samples were taken.",
    )
    async def services(self, services: NamedDependency[ServiceBoard]) -> list[ServiceOut]:
        return [ServiceOut.of(service) for service in services.services]
