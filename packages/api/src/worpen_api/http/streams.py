"""What the live streams (the event feed, the central log) share over HTTP: where a reconnecting client
resumes, and the Server-Sent Events of a follow with its keep-alive comments and its end."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.response import ServerSentEvent, ServerSentEventMessage

from worpen_core.shared.broadcast import FellBehind, keep_alive

T = TypeVar("T")
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")
"""An id this server hands out; any other Last-Event-ID is ignored, as a new follow."""
_encode = msgspec.json.Encoder().encode


def resume_after(request: Request[Any, Any, Any], after: int | None = None) -> int | None:
    """Where a follow starts: after the Last-Event-ID a reconnecting EventSource sends, else `after`."""
    resume = request.headers.get("last-event-id", "")
    return int(resume) if LAST_EVENT_ID.fullmatch(resume) else after


def follow(
    items: AsyncIterator[T],
    message: Callable[[T], ServerSentEventMessage],
    ping_seconds: float,
    draining: asyncio.Event,
) -> ServerSentEvent:
    """`items` as Server-Sent Events (`message` makes each one's, with its id), a comment when none came
    for `ping_seconds`, until the server drains; a client that fell behind gets an `error` event saying so
    and the stream ends."""
    return ServerSentEvent(_messages(items, message, ping_seconds, draining))


async def _messages(
    items: AsyncIterator[T],
    message: Callable[[T], ServerSentEventMessage],
    ping_seconds: float,
    draining: asyncio.Event,
) -> AsyncIterator[ServerSentEventMessage]:
    try:
        async for item in keep_alive(items, ping_seconds, draining):
            yield ServerSentEventMessage(data=None, comment="ping") if item is None else message(item)
    except FellBehind as exc:
        yield ServerSentEventMessage(data=_encode({"detail": str(exc)}).decode(), event="error")
