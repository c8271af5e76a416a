"""Fan-out to live followers, and resuming a follow from a store: each follower costs one bounded buffer
in memory, not a query per item, and one that falls behind is cut off rather than let memory grow."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

STORE_PAGE = 500
"""Items read from the store at a time when a follower catches up."""


class Numbered(Protocol):
    @property
    def id(self) -> int: ...


T = TypeVar("T")
N = TypeVar("N", bound=Numbered)


class FellBehind(Exception):
    """A follower's buffer overflowed: it was cut off, and resumes from the store by reconnecting."""

    def __init__(self, capacity: int) -> None:
        super().__init__(
            f"the client fell behind by more than {capacity} items and was disconnected; reconnect with "
            "Last-Event-ID to resume where it left off"
        )
        self.capacity = capacity


class Subscription(Generic[T]):
    """One follower's buffer: what was published since it last took, up to `capacity` items."""

    def __init__(self, capacity: int, detach: Callable[[Subscription[T]], None]) -> None:
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._detach = detach
        self._ready = asyncio.Event()
        self.overflowed = False

    def offer(self, items: Sequence[T]) -> None:
        if self.overflowed:
            return
        if len(self._items) + len(items) > self._capacity:
            self.overflowed = True
            self._items.clear()
            self._detach(self)
        else:
            self._items.extend(items)
        self._ready.set()

    async def take(self) -> list[T]:
        """What was published since the last take, oldest first (waits for something); FellBehind once
        the buffer overflowed."""
        while not self._items:
            if self.overflowed:
                raise FellBehind(self._capacity)
            self._ready.clear()
            await self._ready.wait()
        taken = list(self._items)
        self._items.clear()
        return taken

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._detach(self)


class Broadcast(Generic[T]):
    """Hands what is published to every subscription, each with a buffer of `capacity` items."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._subscriptions: set[Subscription[T]] = set()

    @property
    def followers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self) -> Subscription[T]:
        subscription: Subscription[T] = Subscription(self._capacity, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    def publish(self, items: Sequence[T]) -> None:
        if items:
            for subscription in list(self._subscriptions):
                subscription.offer(items)


async def resume(
    live: Broadcast[N],
    stored: Callable[[int, int], Awaitable[Sequence[N]]],
    after: int,
    wanted: Callable[[N], bool],
) -> AsyncGenerator[N, None]:
    """The items numbered above `after` that are `wanted`, oldest first, forever: first those
    `stored(after, limit)` returns (already filtered, oldest first), then the live ones.

    The subscription is taken before the store is read, so nothing committed meanwhile is missed, and
    live items numbered at or below the last one sent are skipped, so nothing comes twice. Items must be
    published in the order of their numbers (one writer commits and publishes them)."""
    with live.subscribe() as subscription:
        last = after
        while True:
            page = await stored(last, STORE_PAGE)
            for item in page:
                last = item.id
                yield item
            if len(page) < STORE_PAGE:
                break
        while True:
            for item in await subscription.take():
                if item.id <= last:
                    continue
                last = item.id
                if wanted(item):
                    yield item


async def keep_alive(
    stream: AsyncIterator[T], seconds: float, stopping: asyncio.Event
) -> AsyncIterator[T | None]:
    """The stream's items, and None whenever `seconds` pass without one (a stream's keep-alive), until the
    stream ends or `stopping` is set (the server drains). However it ends (its reader cancelled
    included), the stream's pending step is cancelled before the stream is closed."""
    stop = asyncio.ensure_future(stopping.wait())
    step: asyncio.Future[T] | None = None
    try:
        while True:
            if step is None:
                step = asyncio.ensure_future(anext(stream))
            racing: list[asyncio.Future[Any]] = [step, stop]
            done, _ = await asyncio.wait(racing, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            if step in done:
                finished, step = step, None
                try:
                    item = finished.result()
                except StopAsyncIteration:
                    return
                yield item
            elif stop in done:
                return
            else:
                yield None
    finally:
        stop.cancel()
        if step is not None:
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
