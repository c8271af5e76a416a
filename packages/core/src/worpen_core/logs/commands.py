"""What agents ship: batches of log lines, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from worpen_core.logs.model import FieldValue, Level, LogLine
from worpen_core.shared.errors import InvalidInput, TooLarge
from worpen_core.shared.ids import check_agent_id

MAX_LINES = 1000
"""Lines in one batch; more is refused as too large."""
MAX_BATCH_BYTES = 1 << 20
"""Bytes of one batch's request body; more is refused as too large."""
MESSAGE_MAX_LENGTH = 8192
MAX_FIELDS = 32
FIELD_NAME_MAX_LENGTH = 64
FIELD_VALUE_MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class ShippedLine:
    message: str
    level: Level = Level.INFO
    timestamp: datetime | None = None
    """When the agent saw it; when it was taken if None."""
    fields: dict[str, FieldValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ShipLogs:
    """An agent's batch of lines; `unit` names the container or service they came from, if any."""

    agent_id: str
    lines: tuple[ShippedLine, ...]
    unit: str | None = None

    def __post_init__(self) -> None:
        check_agent_id(self.agent_id, "agentId")
        if self.unit is not None:
            check_agent_id(self.unit, "unit")
        if len(self.lines) > MAX_LINES:
            raise TooLarge(f"a batch holds at most {MAX_LINES} lines, this one {len(self.lines)}")
        for number, line in enumerate(self.lines):
            if len(line.message) > MESSAGE_MAX_LENGTH:
                raise InvalidInput(f"at most {MESSAGE_MAX_LENGTH} characters", f"lines[{number}].message")
            if len(line.fields) > MAX_FIELDS:
                raise InvalidInput(f"at most {MAX_FIELDS} fields", f"lines[{number}].fields")
            if line.timestamp is not None:
                _check_instant(line.timestamp, f"lines[{number}].timestamp")

    @property
    def source(self) -> str:
        return self.agent_id if self.unit is None else f"{self.agent_id}/{self.unit}"

    def to_lines(self, now: datetime) -> list[LogLine]:
        source = self.source
        return [
            LogLine(line.timestamp or now, line.level, source, line.message, dict(line.fields))
            for line in self.lines
        ]


def _check_instant(at: datetime, name: str) -> None:
    """A time the log can store: with an offset, and in UTC still within years 1 to 9999."""
    if at.tzinfo is None:
        raise InvalidInput("must carry a UTC offset", name)
    try:
        at.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("is out of range once in UTC", name) from None
