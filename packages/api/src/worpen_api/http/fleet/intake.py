"""The heartbeat route's lean path: `POST /api/v1/internal/heartbeat` answered in front of Litestar.

Heartbeats are most of what a fleet sends, and Litestar's per-request machinery (routing, the middleware
stack, kwargs extraction and the signature model, the Response object) costs several times a heartbeat's
own work. This ASGI app answers the heartbeats it can answer exactly as the Litestar route would, with
the same steps, not copies of them: `security.authorize` (the API key, the failed-auth throttle, the
permission), the same `HeartbeatIn` struct decoded as laxly as Litestar decodes it, `report_heartbeat`
(the agent binding and the fleet use case, shared with HeartbeatController), and errors answered from
the same table (`http.errors.EXCEPTION_HANDLERS`).

Everything else goes on to Litestar untouched, where HeartbeatController serves it (and documents the
route in the OpenAPI schema): requests from browsers (an Origin header, so CORS applies), bodies without
a Content-Length or over the size limit (413 there), and bodies that do not decode into a HeartbeatIn
(Litestar then words the 400 or 422; it authenticates the caller again, which a valid key passes at no
cost, and no failure is counted twice since only a valid key gets that far).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
from litestar.connection import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from worpen_api.http.errors import EXCEPTION_HANDLERS
from worpen_api.http.fleet.controller import HEARTBEAT_OPT, HEARTBEAT_PATH, report_heartbeat
from worpen_api.http.fleet.dto import HeartbeatIn
from worpen_api.http.security import authorize, refuse
from worpen_api.runtime import Worpen
from worpen_core.shared.errors import WorpenError

JSON = (b"content-type", b"application/json")


def _replay(messages: list[ReceiveMessage], receive: Receive) -> Receive:
    """`receive` for an app that gets the request after us: what we read first, then the rest."""
    pending = deque(messages)

    async def replayed() -> ReceiveMessage:
        return pending.popleft() if pending else await receive()

    return replayed


class HeartbeatIntake:
    def __init__(self, app: ASGIApp, worpen: Worpen) -> None:
        self._app = app
        self._worpen = worpen
        self._max_body = worpen.settings.max_body_bytes
        self._decoder = msgspec.json.Decoder(HeartbeatIn, strict=False)  # as lax as Litestar's decoding
        self._encoder = msgspec.json.Encoder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._takes(scope):
            await self._app(scope, receive, send)
            return
        scope["path_template"] = HEARTBEAT_PATH  # the route label of its metrics, as if Litestar routed it
        try:
            principal = await authorize(self._worpen, scope, HEARTBEAT_OPT)
        except WorpenError as exc:
            await refuse(exc, scope, receive, send)
            return
        messages: list[ReceiveMessage] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client left: Litestar answers it (499)
                await self._app(scope, _replay(messages, receive), send)
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            data = self._decoder.decode(body)
        except (msgspec.MsgspecError, RecursionError):  # Litestar's own decoding says what was wrong
            await self._app(scope, _replay(messages, receive), send)
            return
        try:
            ack = await report_heartbeat(scope, self._worpen.fleet, principal, data)
        except WorpenError as exc:
            await refuse(exc, scope, receive, send)
            return
        except Exception as exc:  # what Litestar's exception handling would answer: logged, a 500
            request: Request[Any, Any, Any] = Request(scope, receive)
            response = EXCEPTION_HANDLERS[Exception](request, exc)
            await response.to_asgi_response(None, request)(scope, receive, send)
            return
        answer = self._encoder.encode(ack)
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [JSON, (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    def _takes(self, scope: Scope) -> bool:
        """A heartbeat not from a browser, with a Content-Length within the limit."""
        if scope["type"] != ScopeType.HTTP or scope["path"] != HEARTBEAT_PATH or scope["method"] != "POST":
            return False
        length = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"origin":
                return False
        return length.isdigit() and int(length) <= self._max_body
