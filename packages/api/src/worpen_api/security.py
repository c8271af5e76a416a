"""Authentication and authorisation in one ASGI middleware: a Bearer API key makes the Principal, and the
permission each route declares (`opt=requires(...)`) decides. A route that declares none is admin-only,
so a forgotten declaration fails closed. (Not Litestar guards: they copy the route handler per call.)"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from worpen_api.errors import response_for
from worpen_api.runtime import Worpen
from worpen_core.auth import ANONYMOUS_ADMIN, Permission, Principal
from worpen_core.errors import Forbidden, Unauthenticated, WorpenError

PUBLIC_PATHS = frozenset({"/health"})
PERMISSION = "permission"


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


class ApiKeyAuthMiddleware:
    """Puts the caller's Principal in scope["user"], or refuses with 401 (429 after repeated failures)."""

    def __init__(self, app: ASGIApp, worpen: Worpen) -> None:
        self._app = app
        self._worpen = worpen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in PUBLIC_PATHS or scope.get("method") == "OPTIONS":
            await self._app(scope, receive, send)
            return
        if not self._worpen.settings.auth:
            scope["user"] = ANONYMOUS_ADMIN
        else:
            try:
                client = scope["client"][0] if scope["client"] else "unknown"
                principal = await self._worpen.authenticator.admit(_authorization(scope), client)
                needed = scope["route_handler"].opt.get(PERMISSION, Permission.ADMIN)
                if not principal.can(needed):
                    raise Forbidden(f"role {principal.role.value!r} lacks the {needed.value!r} permission")
                scope["user"] = principal
            except WorpenError as exc:
                if scope["type"] == ScopeType.WEBSOCKET:
                    await send({"type": "websocket.close", "code": 4401, "reason": exc.detail})
                    return
                # Answered here, not raised, so outer middleware (request log, metrics) sees the status.
                response = response_for(exc).to_asgi_response(None, Request(scope, receive))
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise Unauthenticated("no credential")
    return principal


def requires(permission: Permission) -> dict[str, Permission]:
    """A route's `opt`: the permission a caller needs. A route that declares none needs ADMIN."""
    return {PERMISSION: permission}
