"""Async iterators that end with the server or stall deadlines, and waits that end with the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from worpen_core.shared.errors import TimedOut

T = TypeVar("T")


async def until(stream: AsyncIterator[T], stopping: asyncio.Event) -> AsyncIterator[T]:
    """The stream's items until it ends or `stopping` is set; then the stream is closed."""
    stop = asyncio.ensure_future(stopping.wait())
    step: asyncio.Future[T] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(stream))
            await asyncio.wait([step, stop], return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()
        if step is not None and not step.done():  # cancelled while waiting: the stream is mid-step
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
        await close_stream(stream)


async def stall_deadline(stream: AsyncIterator[T], seconds: float, what: str) -> AsyncIterator[T]:
    """The stream's items; when none comes for `seconds` (from the start or the last one), the stream is
    closed and TimedOut raised, saying that `what` stalled."""
    try:
        while True:
            try:
                item = await asyncio.wait_for(anext(stream), seconds)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise TimedOut(f"{what} stalled: no progress for {seconds:g} s") from None
            yield item
    finally:
        await close_stream(stream)


async def close_stream(stream: AsyncIterator[T]) -> None:
    """Close `stream` if it can be closed (an async generator), so what it holds open is let go now."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def wait_or_stop(wake: Awaitable[object], stopping: asyncio.Event) -> None:
    """Wait until `wake` is done or `stopping` is set, whichever comes first; the other is cancelled."""
    waiting = asyncio.ensure_future(wake)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((waiting, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (waiting, stop):
            pending.cancel()
        await asyncio.gather(waiting, stop, return_exceptions=True)
