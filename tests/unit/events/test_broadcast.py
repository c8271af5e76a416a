"""Live fan-out and keep-alive: pings while idle, the end when the server drains, the follower closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from worpen_core.shared.broadcast import Broadcast, keep_alive


async def test_an_idle_stream_gets_pings_and_ends_when_the_server_drains() -> None:
    closed = asyncio.Event()
    arrived: asyncio.Queue[int] = asyncio.Queue()

    async def follower() -> AsyncIterator[int]:
        try:
            while True:
                yield await arrived.get()
        finally:
            closed.set()

    draining = asyncio.Event()
    stream = keep_alive(follower(), 0.01, draining)

    assert await anext(stream) is None  # idle: a ping
    arrived.put_nowait(7)
    seen = [item async for item in _until_item(stream)]
    draining.set()
    rest = [item async for item in stream]

    assert seen[-1] == 7
    assert all(item is None for item in rest)
    assert closed.is_set()


async def _until_item(stream: AsyncIterator[int | None]) -> AsyncIterator[int | None]:
    async for item in stream:
        yield item
        if item is not None:
            return


async def test_each_subscription_gets_what_is_published_and_leaves_when_done() -> None:
    live: Broadcast[int] = Broadcast(capacity=10)
    with live.subscribe() as one, live.subscribe() as two:
        live.publish([1, 2])
        live.publish([3])
        assert await one.take() == [1, 2, 3]
        assert await two.take() == [1, 2, 3]
        assert live.followers == 2
    assert live.followers == 0
