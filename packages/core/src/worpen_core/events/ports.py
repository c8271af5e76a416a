"""The event bus port: what happens is published once and delivered to every subscriber."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from worpen_core.events.model import Event

EventHandler = Callable[[Event], Awaitable[None]]


class EventBus(Protocol):
    async def publish(self, events: Iterable[Event]) -> None: ...

    def subscribe(self, handler: EventHandler) -> None:
        """Deliver every event published from now on to `handler`; a failing handler does not stop the
        others."""
        ...
