"""Path and query parameters that several routes take, declared once with what the server accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import PathParameter, QueryParameter

from worpen_api.http.wire import NodeName
from worpen_core.containers.service import REFERENCE_PATTERN
from worpen_core.shared.errors import InvalidInput

ContainerRef = Annotated[
    str,
    PathParameter(
        pattern=REFERENCE_PATTERN,
        description="A full container id, a unique id prefix (4 characters or more) or a name. A shorter "
        "reference that is no container's name but prefixes an id is refused (422).",
    ),
]
Node = Annotated[
    NodeName | None,
    QueryParameter(
        min_length=1, max_length=128, description="Only this node (required where a reference is ambiguous)"
    ),
]
EARLIEST = -62_135_596_800
"""0001-01-01T00:00:00Z as a unix time: the earliest `since` a datetime holds."""
LATEST = 253_402_300_799
"""9999-12-31T23:59:59Z as a unix time: the latest."""
Since = Annotated[
    str | None,
    QueryParameter(
        description="Only what happened at or after this time: an RFC 3339 date-time, or a unix time in "
        "seconds (a fraction allowed), as Docker's `since`",
        schema_extra={
            "one_of": [
                Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
                Schema(type=OpenAPIType.NUMBER, minimum=EARLIEST, maximum=LATEST),
            ]
        },
    ),
]
"""Read with `since_of`."""


def since_of(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        at = msgspec.convert(since, datetime, strict=False)
    except (msgspec.ValidationError, ValueError):  # a year beyond 9999 is a ValueError
        at = None
    if at is None or at.tzinfo is None:
        raise InvalidInput("must be an RFC 3339 date-time with an offset, or a unix time in seconds", "since")
    return at
