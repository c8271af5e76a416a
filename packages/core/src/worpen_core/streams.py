"""Helpers for the streams Worpen follows (engine events, logs, the event feed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def until(stream: AsyncIterator[T], stopping: asyncio.Event) -> AsyncIterator[T]:
    """The stream's items until it ends or `stopping` is set; then the stream is closed."""
    stop = asyncio.ensure_future(stopping.wait())
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
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
