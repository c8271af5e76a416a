"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from worpen_api.http.access.controller import ApiKeyController
from worpen_api.http.audit.controller import AuditController
from worpen_api.http.automation.controller import AutomationController
from worpen_api.http.channels.controller import ChannelController, DeliveryController
from worpen_api.http.containers.controller import (
    INVENTORY_AS_OF,
    UNAVAILABLE_NODES,
    ContainerController,
    DockerController,
    ImageController,
)
from worpen_api.http.dashboard.controller import DashboardController
from worpen_api.http.errors import EXCEPTION_HANDLERS
from worpen_api.http.events.controller import EventController
from worpen_api.http.fleet.controller import NEXT_CURSOR, AgentController, HeartbeatController
from worpen_api.http.fleet.intake import HeartbeatIntake
from worpen_api.http.incidents.controller import IncidentController
from worpen_api.http.logs.controller import LogController, LogIntakeController
from worpen_api.http.openapi import StructSchemaPlugin, answer_options
from worpen_api.http.pipelines.controller import (
    PipelineController,
    PipelineDefinitionController,
    PipelineSecretController,
)
from worpen_api.http.security import ApiKeyAuthMiddleware, requires
from worpen_api.http.system.controller import SystemController
from worpen_api.http.telemetry.controller import TelemetryController
from worpen_api.http.terminal.controller import TerminalController
from worpen_api.observability import Metrics, RequestObserver
from worpen_api.runtime import Worpen
from worpen_core.access.model import Permission


def _constant(value: object) -> Provide:
    def provide() -> object:
        return value

    return Provide(provide, use_cache=True, sync_to_thread=False)


def create_app(worpen: Worpen) -> Litestar:
    settings = worpen.settings
    metrics = Metrics(worpen)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await worpen.start()
        try:
            yield
        finally:
            await worpen.stop()

    app = Litestar(
        route_handlers=[
            SystemController,
            TelemetryController,
            AgentController,
            HeartbeatController,
            ApiKeyController,
            ContainerController,
            ImageController,
            DockerController,
            TerminalController,
            AuditController,
            EventController,
            LogController,
            LogIntakeController,
            DashboardController,
            ChannelController,
            DeliveryController,
            IncidentController,
            AutomationController,
            PipelineController,
            PipelineDefinitionController,
            PipelineSecretController,
        ],
        dependencies={
            "fleet": _constant(worpen.fleet),
            "containers": _constant(worpen.containers),
            "audit": _constant(worpen.audit),
            "dashboard": _constant(worpen.dashboard),
            "services": _constant(worpen.services),
            "journal": _constant(worpen.journal),
            "logs": _constant(worpen.logs),
            "telemetry": _constant(worpen.telemetry),
            "notifications": _constant(worpen.notifications),
            "incidents": _constant(worpen.incidents),
            "automation": _constant(worpen.automation),
            "rule_engine": _constant(worpen.rule_engine),
            "pipelines": _constant(worpen.pipelines),
            "agent_channel": _constant(worpen.agents),
            "settings": _constant(settings),
            "draining": _constant(worpen.draining),
            "api_keys": _constant(worpen.api_keys),
            "authenticator": _constant(worpen.authenticator),
            "metrics": _constant(metrics),
            "readiness": _constant(worpen.readiness),
        },
        middleware=[DefineMiddleware(ApiKeyAuthMiddleware, worpen=worpen)],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=answer_options,
        plugins=[StructSchemaPlugin()],
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
            expose_headers=[NEXT_CURSOR, UNAVAILABLE_NODES, INVENTORY_AS_OF, "X-Request-ID", "Retry-After"],
        ),
        openapi_config=OpenAPIConfig(
            title="Worpen",
            version="0.1.0",
            description="Fleet-operations control plane. "
            "Every route but /health, /ready and the pipelines' webhook (signed instead) needs "
            "`Authorization: Bearer <key>`.",
            openapi_router=Router(
                "/schema", route_handlers=[], opt=requires(Permission.READ), include_in_schema=False
            ),
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(type="http", scheme="bearer", bearer_format="wpn_...")
                }
            ),
            security=[{"apiKey": []}],
        ),
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        logging_config=None,
    )
    # Around everything Litestar does with a request (CORS, routing, exception handling), so that every
    # request is observed, routed or not, and heartbeats can take their lean path (http.fleet.intake).
    app.asgi_handler = RequestObserver(HeartbeatIntake(app.asgi_handler, worpen), metrics)
    return app
