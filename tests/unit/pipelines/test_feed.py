"""The live tail of stages' logs: each follower gets the lines stored after it came, then the stage's end;
one that falls behind is told so instead of losing lines silently."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from worpen_core.pipelines.feed import StageEnded, StageFeed
from worpen_core.pipelines.model import StageLogLine, StageStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)


def lines(*numbers: int) -> list[StageLogLine]:
    return [StageLogLine(number, "stdout", f"line {number}", AT) for number in numbers]


async def test_followers_get_what_is_published_for_their_stage_then_its_end() -> None:
    feed = StageFeed()
    build = feed.follow("run_1", "build")
    other = feed.follow("run_1", "test")

    feed.publish("run_1", "build", lines(1, 2))
    feed.end("run_1", "build", StageStatus.SUCCESS)

    assert [await build.get() for _ in range(3)] == [*lines(1, 2), StageEnded(StageStatus.SUCCESS)]
    feed.end("run_1", "test", StageStatus.SKIPPED)
    assert await other.get() == StageEnded(StageStatus.SKIPPED)


async def test_a_follower_waits_for_the_next_line() -> None:
    feed = StageFeed()
    follower = feed.follow("run_1", "build")
    waiting = asyncio.create_task(follower.get())
    await asyncio.sleep(0)
    assert not waiting.done()

    feed.publish("run_1", "build", lines(1))

    assert await asyncio.wait_for(waiting, 1) == lines(1)[0]


async def test_a_follower_that_falls_behind_is_told_then_resumes() -> None:
    feed = StageFeed(capacity=2)
    follower = feed.follow("run_1", "build")

    feed.publish("run_1", "build", lines(1, 2, 3))
    feed.publish("run_1", "build", lines(4))

    assert follower.lagged
    assert await follower.get() is None
    follower.resume(feed.capacity)
    feed.publish("run_1", "build", lines(5))
    assert await follower.get() == lines(5)[0]


async def test_a_slow_follower_does_not_hold_back_the_others() -> None:
    feed = StageFeed(capacity=1)
    slow = feed.follow("run_1", "build")
    quick = feed.follow("run_1", "build")

    feed.publish("run_1", "build", lines(1))
    assert await quick.get() == lines(1)[0]
    feed.publish("run_1", "build", lines(2))

    assert await quick.get() == lines(2)[0]
    assert await slow.get() is None


async def test_a_follower_that_left_gets_nothing_more() -> None:
    feed = StageFeed()
    follower = feed.follow("run_1", "build")
    assert feed.followers == 1

    feed.leave("run_1", "build", follower)
    feed.publish("run_1", "build", lines(1))
    feed.leave("run_1", "build", follower)

    assert feed.followers == 0
    waiting = asyncio.create_task(follower.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
