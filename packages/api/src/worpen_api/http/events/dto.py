"""The journal's event bodies."""

from __future__ import annotations

from typing import Any

from worpen_core.events.model import RecordedEvent


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def event_out(event: RecordedEvent) -> dict[str, Any]:
    """A domain event on the wire: its number in the journal, its type, and its fields in camelCase, as
    they were recorded."""
    return {"seq": event.id, "type": event.type, **{_camel(k): v for k, v in event.payload.items()}}
