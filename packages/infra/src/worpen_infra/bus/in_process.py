"""EventBus in this process: events queue up and a background task hands them to subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from worpen_core.events.model import Event
from worpen_core.events.ports import EventHandler

log = structlog.get_logger("worpen.events")


class InProcessEventBus:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._handlers: list[EventHandler] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    async def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            self._queue.put_nowait(event)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.create_task(self._dispatch(), name="event-bus")

    async def stop(self) -> None:
        """Deliver what is queued, then stop."""
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _dispatch(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                log.info("event", kind=type(event).__name__, subject=event.subject)
                for handler in self._handlers:
                    try:
                        await handler(event)
                    except Exception:
                        log.exception(
                            "event.handler_failed", kind=type(event).__name__, handler=repr(handler)
                        )
            finally:
                self._queue.task_done()
