"""Following a stage's log on a replica that does not run the stage: the writer's replica announces on the
signal, and the follower elsewhere reads the lines from the store live, then the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from tests.fakes.journal_signal import FakeJournalSignal
from tests.fakes.pipelines_support import OPERATOR, PipelineWorld, draft, pipeline_world, stage
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.pipelines.feed import StageEnded, StageFeed
from worpen_core.pipelines.jobs import pipeline_jobs
from worpen_core.pipelines.model import PipelineRun, StageLogLine, StageStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)
Item = StageLogLine | StageEnded


def lines(*numbers: int) -> list[StageLogLine]:
    return [StageLogLine(number, "stdout", f"line {number}", AT) for number in numbers]


async def replicas(lost: bool = False) -> tuple[PipelineWorld, PipelineWorld, PipelineRun]:
    """Two replicas on one database: the first runs the stage, the second serves a follower."""
    uow = FakeUnitOfWorkFactory()
    signal = FakeJournalSignal()
    other = signal.replica()
    signal.lost = other.lost = lost
    runner = pipeline_world(uow=uow, feed_signal=signal)
    follower = pipeline_world(uow=uow, feed_signal=other)
    await runner.pipelines.create(OPERATOR, draft(stage("build")))
    return runner, follower, await runner.pipelines.trigger(OPERATOR, "app")


@contextmanager
def tailing(*worlds: PipelineWorld) -> Iterator[None]:
    stopping = asyncio.Event()
    tasks = [asyncio.ensure_future(world.feed.tail(stopping)) for world in worlds]
    try:
        yield
    finally:
        stopping.set()
        for task in tasks:
            task.cancel()


async def store(world: PipelineWorld, run: PipelineRun, *numbers: int) -> None:
    """What the executor of the replica running the stage does with a batch."""
    async with world.uow() as tx:
        await tx.stage_logs.append(run.id, "build", lines(*numbers))
        await tx.commit()
    world.feed.publish(run.id, "build", lines(*numbers))


async def end(world: PipelineWorld, run: PipelineRun, status: StageStatus) -> None:
    stored = await world.run_of(run.id)
    stored.stage("build").status = status
    async with world.uow() as tx:
        await tx.pipeline_runs.save(stored)
        await tx.commit()
    world.feed.end(run.id, "build", status)


async def take(stream: AsyncIterator[Item], count: int, seconds: float = 2.0) -> list[int | StageStatus]:
    out: list[int | StageStatus] = []
    for _ in range(count):
        item = await asyncio.wait_for(anext(stream), seconds)
        out.append(item.status if isinstance(item, StageEnded) else item.number)
    return out


@pytest.mark.parametrize("lost", [False, True], ids=["signalled", "signal lost: the poll"])
async def test_a_follower_on_another_replica_gets_the_lines_live_and_the_end(lost: bool) -> None:
    runner, follower, run = await replicas(lost)
    await store(runner, run, 1)
    with tailing(runner, follower):
        stream = follower.pipelines.follow(run.id, "build", 0)
        assert await take(stream, 1) == [1]

        await store(runner, run, 2)
        assert await take(stream, 1) == [2]
        await store(runner, run, 3, 4)
        await end(runner, run, StageStatus.SUCCESS)
        assert await take(stream, 3) == [3, 4, StageStatus.SUCCESS]
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
    assert follower.feed.followers == 0


async def test_followers_on_both_replicas_get_every_line_once_in_order() -> None:
    runner, follower, run = await replicas()
    with tailing(runner, follower):
        here = runner.pipelines.follow(run.id, "build", 0)
        there = follower.pipelines.follow(run.id, "build", 0)
        got: dict[str, list[int | StageStatus]] = {"here": [], "there": []}

        async def read(name: str, stream: AsyncIterator[Item]) -> None:
            got[name] = await take(stream, 31, seconds=5)

        readers = [asyncio.ensure_future(read("here", here)), asyncio.ensure_future(read("there", there))]
        for number in range(1, 31):
            await store(runner, run, number)
            await asyncio.sleep(0)
        await end(runner, run, StageStatus.FAILED)
        await asyncio.gather(*readers)

    expected: list[int | StageStatus] = [*range(1, 31), StageStatus.FAILED]
    assert got == {"here": expected, "there": expected}


async def test_the_replica_running_the_stage_is_not_woken_by_its_own_lines() -> None:
    """Its followers get its lines from the writer: a wake right after them does not send them to the
    store (the one after that does, in case the stage moved to another replica)."""
    feed = StageFeed(signal=FakeJournalSignal())
    follower = feed.follow("r1", "build")
    feed.publish("r1", "build", lines(1))
    follower.wake()
    feed.publish("r1", "build", lines(2))
    assert [await follower.get(), await follower.get()] == lines(1, 2)

    follower.wake()
    follower.wake()  # coalesced
    assert await follower.get() is None
    follower.resume(feed.capacity)
    feed.publish("r1", "build", lines(3))
    assert await follower.get() == lines(3)[0]


def test_without_a_signal_nothing_tails_and_nothing_is_announced() -> None:
    world = pipeline_world()
    assert not world.feed.tailing
    assert [job.name for job in pipeline_jobs(world.pipelines, world.executor, feed=world.feed)] == [
        "pipelines.scheduler",
        "pipelines.schedules",
    ]
    signal = FakeJournalSignal()
    shared = pipeline_world(feed_signal=signal)
    names = [job.name for job in pipeline_jobs(shared.pipelines, shared.executor, feed=shared.feed)]
    assert names[-1] == "pipelines.feed"
    shared.feed.publish("r1", "build", lines(1))
    shared.feed.end("r1", "build", StageStatus.SUCCESS)
    assert signal.announced == 2
