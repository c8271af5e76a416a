"""The central log: agents ship lines; operators search them (newest first, by pages) and follow them live."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import (
    Example,
    OpenAPIFormat,
    OpenAPIType,
    Schema,
)
from litestar.params import Body, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from worpen_api.http import streams
from worpen_api.http.errors import documented
from worpen_api.http.logs.dto import LogBatchAck, LogBatchIn, LogEntryOut
from worpen_api.http.openapi import EventStream
from worpen_api.http.parameters import EARLIEST, LATEST, Since, since_of
from worpen_api.http.security import browser_streams, principal_of, requires
from worpen_api.settings import Settings
from worpen_core.access.model import Permission
from worpen_core.logs.commands import MAX_BATCH_BYTES
from worpen_core.logs.model import Level, LogEntry, LogFilter, LogQuery
from worpen_core.logs.service import CentralLog
from worpen_core.shared.errors import InvalidInput

"""An id this server hands out; any other Last-Event-ID is ignored, as a new follow."""
NEXT_CURSOR = "X-Next-Cursor"
"""The header that holds the cursor of the next page, as on the agents list."""
LEVEL_DESCRIPTION = (
    "This level and above, in the order INFO < SUCCESS < WARN < ERROR (SUCCESS is good news: above "
    "routine INFO, below what needs a look)"
)
SOURCE_DESCRIPTION = (
    "Only from this source: an agent id (its units included: `bee-001/web-1`), a node, `worpen`"
)

_encode = msgspec.json.Encoder().encode

LevelAndAbove = Annotated[Level | None, QueryParameter(description=LEVEL_DESCRIPTION)]
Source = Annotated[str | None, QueryParameter(min_length=1, max_length=300, description=SOURCE_DESCRIPTION)]
Until = Annotated[
    str | None,
    QueryParameter(
        description="Only what happened before this time: an RFC 3339 date-time, or a unix time in seconds",
        schema_extra={
            "one_of": [
                Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
                Schema(type=OpenAPIType.NUMBER, minimum=EARLIEST, maximum=LATEST),
            ]
        },
    ),
]


def _instant(text: str | None, name: str) -> datetime | None:
    """`since` or `until` as a UTC time (one beyond year 1 to 9999 in UTC is refused, not stored)."""
    try:
        at = since_of(text)
        return None if at is None else at.astimezone(UTC)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, name) from None
    except OverflowError:
        raise InvalidInput("is out of range once in UTC", name) from None


class LogController(Controller):
    path = "/api/v1/logs"
    tags = ["logs"]

    @get(
        operation_id="listLogs",
        opt=requires(Permission.READ),
        responses=documented(422, 503),
        summary="Search the central log",
        description="A bare array, newest first: Worpen's own events as readable lines, and the lines agents "
        f"ship. When more remain, the {NEXT_CURSOR} header holds the cursor of the next page (stable while "
        "new lines arrive). `q` is a full-text query on the message: words (all must appear), "
        '"a phrase", prefix*, OR, NOT, parentheses; one the server cannot read is a 422 naming `q`.',
    )
    async def list_logs(
        self,
        logs: NamedDependency[CentralLog],
        level: LevelAndAbove = None,
        source: Source = None,
        since: Since = None,
        until: Until = None,
        q: Annotated[str | None, QueryParameter(min_length=1, max_length=500, examples=[])] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        cursor: Annotated[
            str | None,
            QueryParameter(
                pattern=r"^[1-9][0-9]{0,17}$", description=f"The {NEXT_CURSOR} of the previous page"
            ),
        ] = None,
    ) -> Response[list[LogEntryOut]]:
        query = LogQuery(
            filter=LogFilter(level, source),
            since=_instant(since, "since"),
            until=_instant(until, "until"),
            text=q,
            before=None if cursor is None else int(cursor),
            limit=limit + 1,
        )
        entries = await logs.query(query)
        page = entries[:limit]
        headers = {NEXT_CURSOR: str(page[-1].id)} if len(entries) > limit else {}
        return Response([LogEntryOut.of(entry) for entry in page], headers=headers)

    @get(
        "/stream",
        operation_id="followLogs",
        opt=browser_streams(Permission.READ),
        responses=documented(422, 503),
        operation_class=EventStream,
        summary="Follow the central log (Server-Sent Events)",
        description="Each entry as an SSE event `log` whose id is the entry's; a reconnect with "
        "Last-Event-ID gets what it missed (from the store, across restarts), then the live ones, none "
        "twice. A comment keeps an idle stream open; a client that falls too far behind gets an `error` "
        "event saying so and the stream ends.",
    )
    async def follow_logs(
        self,
        request: Request[Any, Any, Any],
        logs: NamedDependency[CentralLog],
        settings: NamedDependency[Settings],
        draining: NamedDependency[asyncio.Event],
        level: LevelAndAbove = None,
        source: Source = None,
    ) -> ServerSentEvent:
        entries = await logs.follow(streams.resume_after(request), LogFilter(level, source))
        return streams.follow(entries, _message, settings.stream_ping_seconds, draining)


class LogIntakeController(Controller):
    path = "/api/v1/internal/logs"
    tags = ["logs"]

    @post(
        operation_id="shipLogs",
        opt=requires(Permission.REPORT),
        responses=documented(400, 413, 422, 503),
        status_code=201,
        request_max_body_size=MAX_BATCH_BYTES,
        summary="Ship log lines (agent keys, for their own ids)",
        description="At most 1,000 lines and 1 MiB of body (413 beyond). Answered once the lines are "
        "committed: what was acknowledged survives a crash.",
    )
    async def ship(
        self,
        request: Request[Any, Any, Any],
        logs: NamedDependency[CentralLog],
        data: Annotated[
            LogBatchIn,
            Body(
                examples=[
                    Example(
                        summary="a container's lines",
                        value={
                            "agentId": "bee-001",
                            "unit": "web-1",
                            "lines": [
                                {"level": "ERROR", "message": "upstream timed out", "fields": {"ms": 30000}}
                            ],
                        },
                    )
                ]
            ),
        ],
    ) -> LogBatchAck:
        principal_of(request).authorize_report(data.agent_id)
        return LogBatchAck(accepted=await logs.ship(data.to_command()))


def _message(entry: LogEntry) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=_encode(LogEntryOut.of(entry)).decode(), event="log", id=str(entry.id))
