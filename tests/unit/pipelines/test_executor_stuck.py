"""A stage never stays stuck: an image pull that hangs is bounded by the stage's timeout and ended by a
cancel, and a log stream that breaks unexpectedly ends the stage instead of watching it again forever."""

from __future__ import annotations

import asyncio

from tests.fakes.pipelines_support import (
    OPERATOR,
    PipelineWorld,
    StageRuntime,
    draft,
    eventually,
    pipeline_world,
    stage,
    stdout,
)
from worpen_core.pipelines.commands import PipelineDraft
from worpen_core.pipelines.executor import ExecutorSettings
from worpen_core.pipelines.model import PipelineRun, RunStatus, StageStatus
from worpen_core.shared.errors import Conflict

FAST = ExecutorSettings(tick_seconds=0.05, kill_wait_seconds=1)
TOOLS = "worpen-test/tools:2"


def finished(run: PipelineRun) -> bool:
    return run.status.finished


async def started(world: PipelineWorld, definition: PipelineDraft) -> PipelineRun:
    await world.pipelines.create(OPERATOR, definition)
    return await world.pipelines.trigger(OPERATOR, definition.id)


async def test_a_stage_whose_image_pull_hangs_ends_at_its_timeout() -> None:
    world = pipeline_world(settings=FAST)
    world.runtimes["n1"].missing_images.add(TOOLS)
    run = await started(world, draft(stage("build"), stage("test", image=TOOLS, timeout_seconds=1)))

    async with world.serving():
        done = await world.until(run.id, finished, seconds=5)

    assert done.stage("test").status in (StageStatus.FAILED, StageStatus.ERROR)


async def test_a_run_whose_image_pull_hangs_can_be_cancelled() -> None:
    world = pipeline_world(settings=ExecutorSettings(tick_seconds=0.05, stop_grace_seconds=0))
    runtime = world.runtimes["n1"]
    runtime.missing_images.add(TOOLS)
    run = await started(world, draft(stage("build"), stage("test", image=TOOLS)))

    async with world.serving():
        await world.until(run.id, lambda run: run.stage("build").status is StageStatus.SUCCESS)
        await eventually(lambda: runtime.pulls == [TOOLS])
        cancelled = await asyncio.wait_for(world.pipelines.cancel(OPERATOR, run.id), 15)

    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.stage("test").status is StageStatus.CANCELLED
    assert runtime.pull_closed


async def test_a_log_stream_that_breaks_unexpectedly_ends_the_stage_in_error() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.output["build"] = stdout("compiling")
    runtime.log_error = RuntimeError("the adapter broke")
    run = await started(world, draft(stage("build"), stage("test")))

    async with world.serving():
        done = await world.until(run.id, finished, seconds=3)

    assert done.stage("build").status is StageStatus.ERROR
    assert done.status is RunStatus.ERROR
    assert world.executor.failures >= 1


class RefusingStops(StageRuntime):
    """An engine that refuses to stop containers (the engine's answer to a stop can be an error)."""

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        raise Conflict("the engine refuses")


async def test_a_stage_past_its_timeout_that_cannot_be_stopped_still_ends() -> None:
    world = pipeline_world(settings=FAST, engine=RefusingStops)
    world.runtimes["n1"].hold = asyncio.Event()
    run = await started(world, draft(stage("build", timeout_seconds=1)))

    async with world.serving():
        done = await world.until(run.id, finished, seconds=15)

    assert done.stage("build").status in (StageStatus.FAILED, StageStatus.ERROR)
