"""After a restart: a stage whose container still runs is watched again, not taken for lost because
nothing renewed its lease while Worpen was down; a run waiting for an approval waits again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.fakes.pipelines_support import IMAGE, OPERATOR, draft, eventually, pipeline_world, stage
from worpen_core.containers.model import WorkloadSpec
from worpen_core.pipelines.executor import LABEL_STAGE, ExecutorSettings
from worpen_core.pipelines.model import RunStatus, StageStatus


async def test_a_stage_still_running_after_a_long_restart_is_watched_to_its_end() -> None:
    world = pipeline_world(settings=ExecutorSettings(tick_seconds=0.05, lease_seconds=60))
    runtime = world.runtimes["n1"]
    hold = runtime.holds["build"] = asyncio.Event()
    await world.pipelines.create(OPERATOR, draft(stage("build"), stage("test")))
    run = await world.pipelines.trigger(OPERATOR, "app")
    container = await runtime.create(
        WorkloadSpec("worpen-old-build", IMAGE, ("true",), labels={LABEL_STAGE: "build"})
    )
    run.status, run.node, run.started_at = RunStatus.RUNNING, "n1", world.clock.now()
    build = run.stage("build")
    build.status, build.container_id, build.started_at = StageStatus.RUNNING, container, world.clock.now()
    build.lease_expires_at = world.clock.now() + timedelta(seconds=60)
    async with world.uow() as tx:
        await tx.pipeline_runs.save(run)
        await tx.commit()
    world.clock.advance(300)  # Worpen was down for five minutes

    await world.executor.resume()
    async with world.serving():
        await eventually(lambda: "build" in runtime.waiting)
        await asyncio.sleep(0.2)  # several scheduler ticks
        hold.set()
        done = await world.until(run.id, lambda run: run.status.finished)

    assert done.stage("build").status is StageStatus.SUCCESS, done.stage("build").error
    assert done.status is RunStatus.SUCCESS


async def test_a_run_waiting_for_an_approval_waits_again_after_a_restart() -> None:
    world = pipeline_world(settings=ExecutorSettings(tick_seconds=0.05))
    await world.pipelines.create(OPERATOR, draft(stage("build"), stage("deploy", approval=True)))
    run = await world.pipelines.trigger(OPERATOR, "app")
    async with world.serving():
        await world.until(run.id, lambda run: run.status is RunStatus.BLOCKED)

    await world.executor.resume()
    async with world.serving():
        await world.pipelines.approve(OPERATOR, run.id, "deploy")
        done = await world.until(run.id, lambda run: run.status.finished)

    assert done.status is RunStatus.SUCCESS
    assert done.stage("deploy").decided_by == "ops"
