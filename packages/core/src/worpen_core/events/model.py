"""The base of every domain event, and events as the journal keeps them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every domain event; `subject` says what it is about, for logs and feeds."""

    @property
    def subject(self) -> str:
        raise NotImplementedError


def plain(value: object) -> JsonValue:
    """A field's value as JSON has it: datetimes in RFC 3339 (UTC as `Z`), enums by value, sequences as
    lists."""
    match value:
        case None | bool() | int() | float() | str():
            return value
        case Enum():
            return plain(value.value)
        case datetime():
            text = value.isoformat()
            return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
        case Mapping():
            return {str(key): plain(item) for key, item in value.items()}
        case list() | tuple() | set() | frozenset():
            return [plain(item) for item in value]
    return str(value)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as the journal stores it: its type's name, its subject and its fields as JSON values.
    Readers get these back, not the event's class: the journal outlives the code that wrote it."""

    at: datetime
    type: str
    subject: str
    payload: dict[str, JsonValue]

    @staticmethod
    def of(event: Event, now: datetime) -> EventRecord:
        """`event` as stored; `at` is its own time when it has one, else `now`."""
        at = getattr(event, "at", None)
        when = at if isinstance(at, datetime) else now
        payload = {field.name: plain(getattr(event, field.name)) for field in dataclasses.fields(event)}
        return EventRecord(when, type(event).__name__, event.subject, payload)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event in the journal: `id` numbers it (monotonically increasing; the SSE id and the API's `seq`)."""

    id: int
    at: datetime
    type: str
    subject: str
    payload: dict[str, JsonValue]

    @staticmethod
    def numbered(event_id: int, record: EventRecord) -> RecordedEvent:
        return RecordedEvent(event_id, record.at, record.type, record.subject, record.payload)
