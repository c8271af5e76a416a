"""The live feed: recent events for late joiners, and every new one for each subscriber."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from functools import partial

from worpen_core.events.model import Event


class EventFeed:
    def __init__(self, keep: int = 1000) -> None:
        self._recent: deque[tuple[int, Event]] = deque(maxlen=keep)
        self._last = 0
        self._changed = asyncio.Condition()

    @property
    def last(self) -> int:
        return self._last

    async def handle(self, event: Event) -> None:
        """The event bus's subscriber: number the event and wake the readers."""
        async with self._changed:
            self._last += 1
            self._recent.append((self._last, event))
            self._changed.notify_all()

    def since(self, after: int) -> list[tuple[int, Event]]:
        """The kept events numbered above `after`, oldest first."""
        return [(number, event) for number, event in self._recent if number > after]

    def _beyond(self, number: int) -> bool:
        return self._last > number

    async def follow(self, after: int | None = None) -> AsyncIterator[tuple[int, Event]]:
        """Events numbered above `after` (from now on when None), as they come, forever."""
        seen = self._last if after is None else after
        while True:
            batch = self.since(seen)
            if not batch:
                async with self._changed:
                    await self._changed.wait_for(partial(self._beyond, seen))
                continue
            for number, event in batch:
                seen = number
                yield number, event
