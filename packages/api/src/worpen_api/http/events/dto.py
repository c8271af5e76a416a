"""The live feed's event bodies."""

from __future__ import annotations

from typing import Any

import msgspec

from worpen_core.events.model import Event


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def event_out(number: int, event: Event) -> dict[str, Any]:
    """A domain event on the wire: its number in the feed, its type, and its fields in camelCase."""
    fields = msgspec.to_builtins(event)
    return {"seq": number, "type": type(event).__name__, **{_camel(k): v for k, v in fields.items()}}
