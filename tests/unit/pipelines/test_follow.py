"""Following a stage's log: what is stored, then what comes live, then the stage's end; from any line on,
never a line twice nor a gap, even for a follower that fell behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.fakes.pipelines_support import OPERATOR, PipelineWorld, draft, pipeline_world, stage, stdout
from worpen_core.pipelines.executor import ExecutorSettings
from worpen_core.pipelines.feed import StageEnded
from worpen_core.pipelines.model import PipelineRun, StageLogLine, StageStatus
from worpen_core.shared.errors import NotFound

AT = datetime(2026, 1, 1, tzinfo=UTC)
Item = StageLogLine | StageEnded


async def queued(capacity: int = 1000) -> tuple[PipelineWorld, PipelineRun]:
    world = pipeline_world(feed_capacity=capacity)
    await world.pipelines.create(OPERATOR, draft(stage("build"), stage("test")))
    return world, await world.pipelines.trigger(OPERATOR, "app")


def lines(*numbers: int) -> list[StageLogLine]:
    return [StageLogLine(number, "stdout", f"line {number}", AT) for number in numbers]


async def store(world: PipelineWorld, run: PipelineRun, *numbers: int, publish: bool = True) -> None:
    """What the executor does with a batch: store it, then hand it to the followers."""
    async with world.uow() as tx:
        await tx.stage_logs.append(run.id, "build", lines(*numbers))
        await tx.commit()
    if publish:
        world.feed.publish(run.id, "build", lines(*numbers))


async def end(world: PipelineWorld, run: PipelineRun, status: StageStatus, publish: bool = True) -> None:
    stored = await world.run_of(run.id)
    stored.stage("build").status = status
    async with world.uow() as tx:
        await tx.pipeline_runs.save(stored)
        await tx.commit()
    if publish:
        world.feed.end(run.id, "build", status)


async def take(stream: AsyncIterator[Item], count: int) -> list[int | StageStatus]:
    """The next `count` items: line numbers, or the status the stage ended with."""
    out: list[int | StageStatus] = []
    for _ in range(count):
        item = await asyncio.wait_for(anext(stream), 2)
        out.append(item.status if isinstance(item, StageEnded) else item.number)
    return out


async def test_stored_lines_come_first_then_live_ones_then_the_end() -> None:
    world, run = await queued()
    await store(world, run, 1, 2)
    stream = world.pipelines.follow(run.id, "build", 0)

    assert await take(stream, 2) == [1, 2]
    await store(world, run, 3)
    assert await take(stream, 1) == [3]
    await store(world, run, 4, 5)
    await end(world, run, StageStatus.SUCCESS)
    assert await take(stream, 3) == [4, 5, StageStatus.SUCCESS]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert world.feed.followers == 0


async def test_a_follower_resumes_after_the_last_line_it_saw() -> None:
    world, run = await queued()
    await store(world, run, 1, 2, 3, 4, 5)
    stream = world.pipelines.follow(run.id, "build", 3)

    await end(world, run, StageStatus.FAILED)

    assert await take(stream, 3) == [4, 5, StageStatus.FAILED]


async def test_a_finished_stage_gives_its_log_and_its_end_at_once() -> None:
    world, run = await queued()
    await store(world, run, 1)
    await end(world, run, StageStatus.SUCCESS, publish=False)

    assert await take(world.pipelines.follow(run.id, "build", 0), 2) == [1, StageStatus.SUCCESS]


async def test_a_line_published_twice_is_given_once_and_a_gap_is_filled_from_the_store() -> None:
    world, run = await queued()
    stream = world.pipelines.follow(run.id, "build", 0)
    await store(world, run, 1)
    assert await take(stream, 1) == [1]

    world.feed.publish(run.id, "build", lines(1))
    await store(world, run, 2, publish=False)
    await store(world, run, 3)

    assert await take(stream, 2) == [2, 3]


async def test_a_follower_that_fell_behind_reads_what_it_missed_from_the_store() -> None:
    world, run = await queued(capacity=2)
    stream = world.pipelines.follow(run.id, "build", 0)
    await store(world, run, 1)
    assert await take(stream, 1) == [1]

    await store(world, run, *range(2, 9))
    assert await take(stream, 7) == list(range(2, 9))
    await store(world, run, 9)
    assert await take(stream, 1) == [9]


async def test_a_follower_that_fell_behind_still_sees_the_end() -> None:
    world, run = await queued(capacity=2)
    stream = world.pipelines.follow(run.id, "build", 0)
    await store(world, run, 1)
    assert await take(stream, 1) == [1]

    await store(world, run, 2, 3, 4)
    await end(world, run, StageStatus.SUCCESS)

    assert await take(stream, 4) == [2, 3, 4, StageStatus.SUCCESS]


async def test_a_cancelled_queued_run_ends_its_followers() -> None:
    world, run = await queued()
    stream = world.pipelines.follow(run.id, "test", 0)
    waiting = asyncio.create_task(take(stream, 1))
    await asyncio.sleep(0.01)

    await world.pipelines.cancel(OPERATOR, run.id)

    assert await waiting == [StageStatus.CANCELLED]


async def test_an_unknown_stage_cannot_be_followed() -> None:
    world, run = await queued()

    with pytest.raises(NotFound):
        await anext(world.pipelines.follow(run.id, "deploy", 0))
    assert world.feed.followers == 0


async def test_a_follower_sees_a_run_live_from_the_executor() -> None:
    world = pipeline_world(settings=ExecutorSettings(tick_seconds=0.05))
    runtime = world.runtimes["n1"]
    runtime.output["build"] = stdout("one", "two", "three")
    await world.pipelines.create(OPERATOR, draft(stage("build")))
    run = await world.pipelines.trigger(OPERATOR, "app")
    stream = world.pipelines.follow(run.id, "build", 0)
    following = asyncio.create_task(take(stream, 4))
    await asyncio.sleep(0.01)

    async with world.serving():
        assert await following == [1, 2, 3, StageStatus.SUCCESS]
