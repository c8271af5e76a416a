"""Authentication and authorisation in one ASGI middleware: a Bearer API key makes the Principal, and the
permission each route declares (`opt=requires(...)`) decides. A route that declares none is admin-only,
so a forgotten declaration fails closed. (Not Litestar guards: they copy the route handler per call.)

Browsers cannot set headers on a WebSocket or an EventSource, so WebSockets, and the routes that declare
`opt=browser_streams(...)`, also take the key as the `access_token` query parameter or, on a WebSocket,
as a `worpen.bearer.<key>` subprotocol. WebSockets from a browser must come from an allowed origin (the
CORS setting)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from litestar.connection import ASGIConnection, Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from worpen_api.http.errors import response_for
from worpen_api.runtime import Worpen
from worpen_core.access.model import ANONYMOUS_ADMIN, Permission, Principal
from worpen_core.shared.errors import Forbidden, Unauthenticated, WorpenError

PUBLIC_PATHS = frozenset({"/health", "/ready", "/api/v1/pipelines/webhook"})
"""Routes without an API key: the health and readiness checks, and the pipelines' push webhook (signed by
HMAC instead)."""
PERMISSION = "permission"
KEY_IN_QUERY = "key_in_query"
BEARER_SUBPROTOCOL = "worpen.bearer."
ORIGIN_REFUSED = 4403


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")
    return None


def _authorization(scope: Scope, opt: Mapping[str, Any]) -> str | None:
    """The Authorization header, or where a browser's WebSocket or EventSource can put the key."""
    header = _header(scope, b"authorization")
    if header is not None:
        return header
    websocket = scope["type"] == ScopeType.WEBSOCKET
    if not (websocket or opt.get(KEY_IN_QUERY)):
        return None
    protocols: list[str] = list(scope.get("subprotocols", ())) if websocket else []  # type: ignore[call-overload]
    for protocol in protocols:
        if protocol.startswith(BEARER_SUBPROTOCOL):
            return "Bearer " + protocol.removeprefix(BEARER_SUBPROTOCOL)
    keys = parse_qs(scope["query_string"].decode("latin-1")).get("access_token")
    return f"Bearer {keys[0]}" if keys else None


class ApiKeyAuthMiddleware:
    """Puts the caller's Principal in scope["user"], or refuses with 401 (429 after repeated failures)."""

    def __init__(self, app: ASGIApp, worpen: Worpen) -> None:
        self._app = app
        self._worpen = worpen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in PUBLIC_PATHS or scope.get("method") == "OPTIONS":
            await self._app(scope, receive, send)
            return
        if scope["type"] == ScopeType.WEBSOCKET and not self._origin_allowed(scope):
            await send({"type": "websocket.close", "code": ORIGIN_REFUSED, "reason": "origin not allowed"})
            return
        try:
            scope["user"] = await authorize(self._worpen, scope, scope["route_handler"].opt)
        except WorpenError as exc:
            if scope["type"] == ScopeType.WEBSOCKET:
                await send({"type": "websocket.close", "code": 4401, "reason": exc.detail})
                return
            await refuse(exc, scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _origin_allowed(self, scope: Scope) -> bool:
        """Clients other than browsers send no Origin; a browser's must be one CORS allows."""
        origin = _header(scope, b"origin")
        allowed = self._worpen.settings.cors_origins
        return origin is None or "*" in allowed or origin in allowed


async def authorize(worpen: Worpen, scope: Scope, opt: Mapping[str, Any]) -> Principal:
    """The caller of a route with these `opt`s, if its key may use it; WorpenError (401, 403, 429) if not.
    The one check of every request, whether Litestar routed it or worpen_api.http.fleet.intake took it."""
    if not worpen.settings.auth:
        return ANONYMOUS_ADMIN
    client = scope["client"][0] if scope["client"] else "unknown"
    principal = await worpen.authenticator.admit(_authorization(scope, opt), client)
    needed = opt.get(PERMISSION, Permission.ADMIN)
    if not principal.can(needed):
        raise Forbidden(f"role {principal.role.value!r} lacks the {needed.value!r} permission")
    return principal


async def refuse(exc: WorpenError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answers an HTTP request with the error `exc` maps to. Answered, not raised, so that the request
    observer sees the status."""
    response = response_for(exc).to_asgi_response(None, Request(scope, receive))
    await response(scope, receive, send)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise Unauthenticated("no credential")
    return principal


def requires(permission: Permission) -> dict[str, Any]:
    """A route's `opt`: the permission a caller needs. A route that declares none needs ADMIN."""
    return {PERMISSION: permission}


def browser_streams(permission: Permission) -> dict[str, Any]:
    """`requires(permission)` for a route a browser follows with EventSource, which cannot send headers:
    the key may come as the `access_token` query parameter too."""
    return {PERMISSION: permission, KEY_IN_QUERY: True}
