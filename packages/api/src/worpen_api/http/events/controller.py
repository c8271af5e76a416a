"""The live event feed over Server-Sent Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from worpen_api.http.errors import documented
from worpen_api.http.events.dto import event_out
from worpen_api.http.openapi import MayStream
from worpen_api.http.security import browser_streams
from worpen_core.access.model import Permission
from worpen_core.events.feed import EventFeed
from worpen_core.shared.streams import until

_encode = msgspec.json.Encoder().encode


class EventController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @get(
        operation_id="domainEvents",
        opt=browser_streams(Permission.READ),
        responses=documented(422),
        operation_class=MayStream,
        summary="Domain events: agents, containers, images and engines",
        description="The latest events numbered above `after` (`seq`), as JSON. With `follow=true`, a "
        "Server-Sent Events stream of them as they happen (each event's SSE id is its `seq`; a reconnect "
        "with Last-Event-ID resumes after it).",
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        feed: NamedDependency[EventFeed],
        draining: NamedDependency[asyncio.Event],
        # Litestar 2 leaves a minimum of 0 out of the schema: stated again.
        after: Annotated[int | None, QueryParameter(ge=0, schema_extra={"minimum": 0})] = None,
        follow: FromQuery[bool] = False,
    ) -> Response[Any]:
        if not follow:
            return Response([event_out(n, e) for n, e in feed.since(after or 0)])
        resume = request.headers.get("last-event-id", "")
        start = int(resume) if resume.isdigit() else after
        return ServerSentEvent(_follow(feed, start, draining))


async def _follow(
    feed: EventFeed, after: int | None, draining: asyncio.Event
) -> AsyncIterator[ServerSentEventMessage]:
    async for number, event in until(feed.follow(after), draining):
        body = event_out(number, event)
        yield ServerSentEventMessage(data=_encode(body).decode(), event=body["type"], id=str(number))
