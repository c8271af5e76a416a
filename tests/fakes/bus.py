"""An event bus that delivers in the publisher's task."""

from __future__ import annotations

from collections.abc import Iterable

from worpen_core.events.model import Event
from worpen_core.events.ports import EventHandler


class FakeEventBus:
    """Delivers each event to the subscribers as it is published, in the publisher's task."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self._handlers: list[EventHandler] = []

    async def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            self.published.append(event)
            for handler in self._handlers:
                await handler(event)

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)
