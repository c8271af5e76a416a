"""Health, readiness and metrics."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from msgspec import Meta
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worpen_api.http.errors import ErrorOut, documented
from worpen_api.http.security import requires
from worpen_api.http.wire import Wire
from worpen_api.observability import Metrics
from worpen_api.runtime import Readiness
from worpen_core.access.model import Permission

PROMETHEUS_TEXT = CONTENT_TYPE_LATEST.removesuffix("; charset=utf-8")


class ReadyOut(Wire):
    status: Annotated[str, Meta(examples=["ready"])]
    database: Annotated[str, Meta(description="The database's backend", examples=["postgresql", "sqlite"])]
    schema: Annotated[str, Meta(description="The schema's migration, the newest this server knows")]


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
        "/ready",
        operation_id="ready",
        security=[{}],
        summary="Readiness for load balancers (no credential)",
        description="200 when the database answers and its schema is at the newest migration this server "
        "knows, within the database's connect timeout; else 503 naming what is wrong. /health stays "
        "liveness only: a replica that is not ready is alive, and comes back by itself.",
        responses={
            503: ResponseSpec(
                ErrorOut,
                description="The database is unavailable or its schema is not this server's; "
                "`detail` says which",
                generate_examples=False,
            )
        },
    )
    async def ready(self, readiness: NamedDependency[Readiness]) -> ReadyOut:
        found = await readiness()
        return ReadyOut(status="ready", database=found.get("database", ""), schema=found.get("schema", ""))

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
