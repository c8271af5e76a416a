"""The journal of domain events: read from the store, or followed over Server-Sent Events."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.response import ServerSentEventMessage

from worpen_api.http import streams
from worpen_api.http.errors import documented
from worpen_api.http.events.dto import event_out
from worpen_api.http.openapi import MayStream
from worpen_api.http.security import browser_streams
from worpen_api.settings import Settings
from worpen_core.access.model import Permission
from worpen_core.events.journal import EventJournal
from worpen_core.events.model import RecordedEvent

_encode = msgspec.json.Encoder().encode
TYPES_PATTERN = r"^[A-Za-z][A-Za-z0-9]*(,[A-Za-z][A-Za-z0-9]*)*$"
MAX_ID = 2**63 - 1
"""The largest id the database holds (a signed 64-bit integer)."""


def _types(types: str | None) -> frozenset[str] | None:
    return None if types is None else frozenset(types.split(","))


class EventController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @get(
        operation_id="domainEvents",
        opt=browser_streams(Permission.READ),
        responses=documented(422, 503),
        operation_class=MayStream,
        summary="Domain events: agents, containers, images, engines and audited operations",
        description="The journal, kept across restarts (for `WORPEN_EVENT_RETENTION_DAYS`): the events "
        "numbered above `after` (`seq`), or the newest ones without it, oldest first, at most `limit`. "
        "With `follow=true`, a Server-Sent Events stream of them as they happen: each event's SSE id is "
        "its `seq`, and a reconnect with Last-Event-ID (or `after`) gets what it missed, then the live "
        "ones, none twice. A comment keeps an idle stream open; a client that falls too far behind gets "
        "an `error` event saying so and the stream ends.",
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        journal: NamedDependency[EventJournal],
        settings: NamedDependency[Settings],
        draining: NamedDependency[asyncio.Event],
        # Litestar 2 leaves a minimum of 0 out of the schema: stated again.
        after: Annotated[int | None, QueryParameter(ge=0, le=MAX_ID, schema_extra={"minimum": 0})] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 1000,
        types: Annotated[
            str | None,
            QueryParameter(
                max_length=2000,
                pattern=TYPES_PATTERN,
                description="Only events of these types, comma-separated (`AgentWentOffline,ContainerDied`)",
            ),
        ] = None,
        follow: FromQuery[bool] = False,
    ) -> Response[Any]:
        if not follow:
            return Response([event_out(event) for event in await journal.read(after, limit, _types(types))])
        events = await journal.follow(streams.resume_after(request, after), _types(types))
        return streams.follow(events, _message, settings.stream_ping_seconds, draining)


def _message(event: RecordedEvent) -> ServerSentEventMessage:
    body = event_out(event)
    return ServerSentEventMessage(data=_encode(body).decode(), event=body["type"], id=str(event.id))
