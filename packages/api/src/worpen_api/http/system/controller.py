"""Health and metrics."""

from __future__ import annotations

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worpen_api.http.errors import documented
from worpen_api.http.security import requires
from worpen_api.observability import Metrics
from worpen_core.access.model import Permission

PROMETHEUS_TEXT = CONTENT_TYPE_LATEST.removesuffix("; charset=utf-8")


class SystemController(Controller):
    tags = ["system"]

    @get(
        "/health",
        operation_id="health",
        media_type=MediaType.TEXT,
        security=[{}],
        summary="Liveness (no credential)",
    )
    async def health(self) -> str:
        return "OK"

    @get(
        "/metrics",
        operation_id="metrics",
        responses=documented(),
        opt=requires(Permission.READ),
        media_type=MediaType.TEXT,
        summary="Prometheus metrics (viewer and up)",
        sync_to_thread=False,
    )
    def metrics(self, metrics: NamedDependency[Metrics]) -> Response[bytes]:
        # Litestar adds the charset of every text/* answer itself.
        return Response(generate_latest(metrics.registry), media_type=PROMETHEUS_TEXT)
