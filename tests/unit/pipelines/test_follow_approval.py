"""Following a stage that waits for an approval: its log goes on once it is approved and the follow ends
with the stage's final status, as it does for a follower that came while it waited."""

from __future__ import annotations

import asyncio

from tests.fakes.pipelines_support import OPERATOR, draft, pipeline_world, stage, stdout
from worpen_core.pipelines.executor import ExecutorSettings
from worpen_core.pipelines.feed import StageEnded
from worpen_core.pipelines.model import RunStatus, StageStatus


async def test_a_follower_of_an_approval_stage_follows_it_to_its_end() -> None:
    world = pipeline_world(settings=ExecutorSettings(tick_seconds=0.05))
    world.runtimes["n1"].output["deploy"] = stdout("deploying")
    await world.pipelines.create(OPERATOR, draft(stage("build"), stage("deploy", approval=True)))
    run = await world.pipelines.trigger(OPERATOR, "app")
    seen: list[str] = []

    async def follow() -> None:
        async for item in world.pipelines.follow(run.id, "deploy", 0):
            seen.append(item.status.value if isinstance(item, StageEnded) else item.text)

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    async with world.serving():
        await world.until(run.id, lambda run: run.status is RunStatus.BLOCKED)
        await world.pipelines.approve(OPERATOR, run.id, "deploy")
        await world.until(run.id, lambda run: run.status.finished)
        await asyncio.wait_for(following, 2)

    assert seen == ["deploying", StageStatus.SUCCESS.value]
