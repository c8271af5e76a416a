"""A listing gathered from several places, with what could not be reached."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class Listing(Generic[Item]):
    items: list[Item]
    unavailable: dict[str, str]
    """Nodes whose engine could not be listed, with why."""
    as_of: dict[str, datetime] = field(default_factory=dict)
    """Nodes listed from a kept inventory (agents' nodes), with when it was taken."""
