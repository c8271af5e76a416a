"""The event bus port."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from worpen_core.events.model import Event


class EventBus(Protocol):
    async def publish(self, events: Iterable[Event]) -> None: ...
