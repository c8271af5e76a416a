"""The central log's bodies: batches agents ship, and entries as readers get them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from worpen_api.http.parameters import EARLIEST, LATEST
from worpen_api.http.wire import AgentId, Wire
from worpen_core.logs.commands import (
    FIELD_NAME_MAX_LENGTH,
    FIELD_VALUE_MAX_LENGTH,
    MAX_FIELDS,
    MESSAGE_MAX_LENGTH,
    ShipLogs,
    ShippedLine,
)
from worpen_core.logs.model import Level, LogEntry
from worpen_core.shared.ids import AGENT_ID_MAX_LENGTH, AGENT_ID_PATTERN

FieldName = Annotated[str, Meta(min_length=1, max_length=FIELD_NAME_MAX_LENGTH)]
FieldValue = Annotated[str, Meta(max_length=FIELD_VALUE_MAX_LENGTH)] | int | float | bool | None
Fields = Annotated[
    dict[FieldName, FieldValue],
    Meta(
        max_length=MAX_FIELDS,
        description="Structured fields: names to strings, numbers, booleans or null",
    ),
]


class LogLineIn(Wire, forbid_unknown_fields=True):
    message: Annotated[str, Meta(max_length=MESSAGE_MAX_LENGTH)]
    level: Level = Level.INFO
    timestamp: (
        Annotated[datetime, Meta(tz=True, description="An RFC 3339 date-time with an offset")]
        | Annotated[float, Meta(ge=EARLIEST, le=LATEST, description="A unix time in seconds")]
        | None
    ) = None
    """When it was logged (an RFC 3339 date-time, or a unix time as agents often have it); when the server
    took it if left out."""

    def at(self) -> datetime | None:
        if isinstance(self.timestamp, float | int):
            return datetime.fromtimestamp(self.timestamp, UTC)
        return self.timestamp

    fields: Fields = msgspec.field(default_factory=dict)


class LogBatchIn(Wire, forbid_unknown_fields=True):
    """An agent's lines: at most 1,000 of them and 1 MiB of body (413 beyond)."""

    agent_id: AgentId
    lines: list[LogLineIn]
    unit: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=AGENT_ID_MAX_LENGTH,
                pattern=AGENT_ID_PATTERN,
                description="The container or service the lines come from: their source is `agentId/unit`",
                examples=["web-1"],
            ),
        ]
        | None
    ) = None

    def to_command(self) -> ShipLogs:
        lines = tuple(ShippedLine(line.message, line.level, line.at(), line.fields) for line in self.lines)
        return ShipLogs(self.agent_id, lines, self.unit)


class LogBatchAck(Wire):
    accepted: int
    """Lines written (committed: they survive a crash from now on)."""


class LogEntryOut(Wire):
    id: int
    timestamp: datetime
    level: Level
    source: str
    message: str
    fields: dict[str, str | int | float | bool | None]

    @classmethod
    def of(cls, entry: LogEntry) -> LogEntryOut:
        return msgspec.convert(entry, cls, from_attributes=True)
