"""Runs driven end to end on fake engines: stages in dependency order, failures skipping what depends on
them, approvals, cancels, timeouts, what cannot run ending in ERROR, node slots and selectors, and what a
restart or a lost lease leaves behind."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.fakes.pipelines_support import (
    ADMIN,
    COMMIT,
    IMAGE,
    KILLED,
    OPERATOR,
    PipelineWorld,
    draft,
    eventually,
    pipeline_world,
    stage,
    stdout,
)
from worpen_core.containers.model import WorkloadSpec
from worpen_core.logs.model import Level
from worpen_core.pipelines.commands import PipelineDraft
from worpen_core.pipelines.events import (
    PipelineEvent,
    PipelineRunFinished,
    PipelineRunStarted,
    PipelineStageFinished,
)
from worpen_core.pipelines.executor import LABEL_STAGE, ExecutorSettings
from worpen_core.pipelines.model import (
    MASK,
    WORKSPACE,
    PipelineRun,
    RunStatus,
    StageStatus,
    TriggerKind,
)
from worpen_core.shared.errors import Conflict, Unavailable

FAST = ExecutorSettings(tick_seconds=0.05)


def finished(run: PipelineRun) -> bool:
    return run.status.finished


def statuses(run: PipelineRun) -> dict[str, StageStatus]:
    return {stage.name: stage.status for stage in run.stages}


async def started(world: PipelineWorld, definition: PipelineDraft) -> PipelineRun:
    await world.pipelines.create(OPERATOR, definition)
    return await world.pipelines.trigger(OPERATOR, definition.id)


def stage_order(world: PipelineWorld, node: str = "n1") -> list[str]:
    runtime = world.runtimes[node]
    return [ref.split("-")[-2] for ref in runtime.started]


async def test_stages_of_a_linear_pipeline_run_in_order_and_the_run_succeeds() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.output["build"] = stdout("compiling", "done")
    run = await started(world, draft(stage("build", "make"), stage("test", "make test"), stage("ship")))

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.SUCCESS
    assert done.node == "n1"
    assert done.commit == COMMIT
    assert done.author == "dev"
    assert statuses(done) == {
        "build": StageStatus.SUCCESS,
        "test": StageStatus.SUCCESS,
        "ship": StageStatus.SUCCESS,
    }
    assert [stage.exit_code for stage in done.stages] == [0, 0, 0]
    assert stage_order(world) == ["build", "test", "ship"]
    assert world.fetcher.fetched == [("https://git.example.com/team/app.git", "main", None)]
    assert [path for _, path in runtime.archives] == [WORKSPACE]
    assert runtime.workloads == {}
    assert runtime.volume_labels == {}
    assert [line.text for line in await world.pipelines.logs(run.id, "build", 0, 10)] == ["compiling", "done"]
    assert done.stages[0].log_lines == 2


async def test_a_stage_runs_its_commands_in_its_image_with_the_runs_environment() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    hold = runtime.holds["build"] = asyncio.Event()
    run = await started(world, draft(stage("build", "make", "make test", env={"GOFLAGS": "-v"})))

    async with world.serving():
        await eventually(lambda: "build" in runtime.waiting)
        (spec,) = runtime.workloads.values()
        hold.set()
        await world.until(run.id, finished)

    assert spec.image == "worpen-test/busybox:1"
    assert spec.command[:2] == ("/bin/sh", "-c")
    assert "make test" in spec.command[2]
    assert spec.volume is not None
    assert spec.mount_path == WORKSPACE
    assert spec.labels[LABEL_STAGE] == "build"
    assert spec.env["GOFLAGS"] == "-v"
    assert spec.env["CI"] == "true"
    assert spec.env["WORPEN_COMMIT"] == COMMIT
    assert spec.env["WORPEN_RUN"] == run.id


async def test_a_failing_stage_skips_its_dependents_and_fails_the_run() -> None:
    world = pipeline_world(settings=FAST)
    world.runtimes["n1"].codes["test"] = 2
    definition = draft(stage("build"), stage("test"), stage("ship"), stage("lint", depends_on=("build",)))
    run = await started(world, definition)

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.FAILED
    assert done.error == "stage test: exited with code 2"
    assert statuses(done) == {
        "build": StageStatus.SUCCESS,
        "test": StageStatus.FAILED,
        "ship": StageStatus.SKIPPED,
        "lint": StageStatus.SUCCESS,
    }
    assert done.stage("test").exit_code == 2
    assert done.stage("ship").error == "needs test FAILED"


async def test_independent_stages_run_at_the_same_time() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    holds = {name: runtime.holds.setdefault(name, asyncio.Event()) for name in ("unit", "lint")}
    definition = draft(
        stage("unit", depends_on=()), stage("lint", depends_on=()), stage("ship", depends_on=("unit", "lint"))
    )
    run = await started(world, definition)

    async with world.serving():
        await eventually(lambda: runtime.waiting == {"unit", "lint"})
        assert statuses(await world.run_of(run.id))["ship"] is StageStatus.PENDING
        holds["unit"].set()
        await world.until(run.id, lambda run: run.stage("unit").status is StageStatus.SUCCESS)
        assert statuses(await world.run_of(run.id))["ship"] is StageStatus.PENDING
        holds["lint"].set()
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.SUCCESS
    assert stage_order(world)[-1] == "ship"


async def test_an_approved_stage_runs_after_waiting_blocked() -> None:
    world = pipeline_world(settings=FAST)
    run = await started(world, draft(stage("build"), stage("deploy", approval=True), stage("notify")))

    async with world.serving():
        blocked = await world.until(run.id, lambda run: run.status is RunStatus.BLOCKED)
        assert statuses(blocked) == {
            "build": StageStatus.SUCCESS,
            "deploy": StageStatus.BLOCKED,
            "notify": StageStatus.PENDING,
        }
        with pytest.raises(Conflict):
            await world.pipelines.approve(OPERATOR, run.id, "notify")
        await world.pipelines.approve(OPERATOR, run.id, "deploy")
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.SUCCESS
    assert done.stage("deploy").decided_by == "ops"
    assert stage_order(world) == ["build", "deploy", "notify"]


async def test_a_declined_stage_and_what_follows_are_skipped_and_the_run_is_cancelled() -> None:
    world = pipeline_world(settings=FAST)
    run = await started(world, draft(stage("build"), stage("deploy", approval=True), stage("notify")))

    async with world.serving():
        await world.until(run.id, lambda run: run.status is RunStatus.BLOCKED)
        await world.pipelines.decline(OPERATOR, run.id, "deploy")
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.CANCELLED
    assert statuses(done) == {
        "build": StageStatus.SUCCESS,
        "deploy": StageStatus.SKIPPED,
        "notify": StageStatus.SKIPPED,
    }
    assert done.stage("deploy").error == "declined by ops"
    assert done.error is not None
    assert "deploy" in done.error
    assert stage_order(world) == ["build"]


async def test_a_queued_run_is_cancelled_without_running() -> None:
    world = pipeline_world(settings=FAST)
    run = await started(world, draft(stage("build"), stage("test")))

    cancelled = await world.pipelines.cancel(OPERATOR, run.id)
    async with world.serving():
        await asyncio.sleep(0.2)

    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.cancelled_by == "ops"
    assert set(statuses(cancelled).values()) == {StageStatus.CANCELLED}
    assert (await world.run_of(run.id)).status is RunStatus.CANCELLED
    assert world.runtimes["n1"].started == []
    assert world.fetcher.fetched == []
    with pytest.raises(Conflict):
        await world.pipelines.cancel(OPERATOR, run.id)


async def test_a_running_run_is_cancelled_by_stopping_its_container() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.holds["build"] = asyncio.Event()
    run = await started(world, draft(stage("build"), stage("test")))

    async with world.serving():
        await eventually(lambda: "build" in runtime.waiting)
        cancelled = await world.pipelines.cancel(OPERATOR, run.id)

    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.error == "cancelled by ops"
    assert statuses(cancelled) == {"build": StageStatus.CANCELLED, "test": StageStatus.CANCELLED}
    assert cancelled.stage("build").exit_code == KILLED
    assert [grace for _, grace in runtime.stops] == [world.executor.settings.stop_grace_seconds]
    assert runtime.workloads == {}
    assert runtime.volume_labels == {}


async def test_a_blocked_run_is_cancelled() -> None:
    world = pipeline_world(settings=FAST)
    run = await started(world, draft(stage("build"), stage("deploy", approval=True)))

    async with world.serving():
        await world.until(run.id, lambda run: run.status is RunStatus.BLOCKED)
        cancelled = await world.pipelines.cancel(OPERATOR, run.id)

    assert cancelled.status is RunStatus.CANCELLED
    assert statuses(cancelled) == {"build": StageStatus.SUCCESS, "deploy": StageStatus.CANCELLED}


async def test_a_stage_past_its_timeout_is_killed_and_fails() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.hold = asyncio.Event()
    run = await started(world, draft(stage("build", timeout_seconds=1), stage("test")))

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.FAILED
    assert done.stage("build").status is StageStatus.FAILED
    assert done.stage("build").error == "timed out after 1 s"
    assert done.stage("build").exit_code == KILLED
    assert done.stage("test").status is StageStatus.SKIPPED
    assert [grace for _, grace in runtime.stops] == [0]


async def test_a_missing_secret_ends_the_run_in_error_before_anything_runs() -> None:
    world = pipeline_world(settings=FAST)
    run = await started(world, draft(stage("build", secrets=("TOKEN",)), stage("test")))

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.ERROR
    assert done.error is not None
    assert "TOKEN" in done.error
    assert set(statuses(done).values()) == {StageStatus.SKIPPED}
    assert world.runtimes["n1"].started == []
    assert world.fetcher.fetched == []


async def test_a_secret_reaches_its_stage_and_is_masked_in_the_log() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.holds["build"] = asyncio.Event()
    runtime.output["build"] = stdout("token is hunter22!", "ok")
    await world.pipelines.put_secret(ADMIN, "TOKEN", "hunter22")
    run = await started(world, draft(stage("build", secrets=("TOKEN",))))

    async with world.serving():
        await eventually(lambda: "build" in runtime.waiting)
        (spec,) = runtime.workloads.values()
        runtime.holds["build"].set()
        done = await world.until(run.id, finished)

    assert spec.env["TOKEN"] == "hunter22"
    assert done.status is RunStatus.SUCCESS
    logged = [line.text for line in await world.pipelines.logs(run.id, "build", 0, 10)]
    assert logged == [f"token is {MASK}!", "ok"]


async def test_a_source_that_cannot_be_fetched_ends_the_run_in_error() -> None:
    world = pipeline_world(settings=FAST)
    world.fetcher.error = Unavailable("git.example.com", "connection refused")
    run = await started(world, draft(stage("build"), stage("test")))

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.ERROR
    assert done.error is not None
    assert "connection refused" in done.error
    assert set(statuses(done).values()) == {StageStatus.SKIPPED}
    assert world.runtimes["n1"].started == []


async def test_an_image_the_node_lacks_and_cannot_pull_ends_the_stage_in_error() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.pull_stalls = False
    runtime.missing_images.add("worpen-test/tools:2")
    run = await started(world, draft(stage("build"), stage("test", image="worpen-test/tools:2")))

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.ERROR
    assert statuses(done) == {"build": StageStatus.SUCCESS, "test": StageStatus.ERROR}
    assert "worpen-test/tools:2" in str(done.stage("test").error)


async def test_a_node_runs_at_most_its_slots_and_the_queue_moves_when_one_frees() -> None:
    world = pipeline_world(settings=ExecutorSettings(node_slots=1, tick_seconds=0.05))
    runtime = world.runtimes["n1"]
    hold = runtime.holds["build"] = asyncio.Event()
    first = await started(world, draft(stage("build")))
    second = await world.pipelines.trigger(OPERATOR, "app")

    async with world.serving():
        await eventually(lambda: "build" in runtime.waiting)
        await asyncio.sleep(0.2)  # several scheduler ticks
        assert (await world.run_of(second.id)).status is RunStatus.PENDING
        hold.set()
        done = [await world.until(run.id, finished) for run in (first, second)]

    assert [run.status for run in done] == [RunStatus.SUCCESS, RunStatus.SUCCESS]
    assert [run.number for run in done] == [1, 2]


async def test_a_run_waits_for_a_node_with_the_labels_its_stages_select() -> None:
    settings = ExecutorSettings(
        tick_seconds=0.05, node_labels={"n1": {"arch": "amd64"}, "n2": {"arch": "arm64"}}
    )
    world = pipeline_world(nodes=("n1", "n2"), settings=settings)
    await world.pipelines.create(OPERATOR, draft(stage("build", node_labels={"arch": "arm64"})))
    await world.pipelines.create(
        OPERATOR, draft(stage("build", node_labels={"arch": "riscv"}), pipeline_id="odd")
    )
    arm = await world.pipelines.trigger(OPERATOR, "app")
    odd = await world.pipelines.trigger(OPERATOR, "odd")

    async with world.serving():
        done = await world.until(arm.id, finished)
        await asyncio.sleep(0.2)  # several scheduler ticks
        waiting = await world.run_of(odd.id)

    assert done.status is RunStatus.SUCCESS
    assert done.node == "n2"
    assert waiting.status is RunStatus.PENDING
    assert waiting.node is None


async def test_a_run_selecting_a_node_by_name_runs_there() -> None:
    world = pipeline_world(nodes=("n1", "n2"), settings=FAST)
    run = await started(world, draft(stage("build", node_labels={"node": "n2"})))

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.node == "n2"
    assert world.runtimes["n1"].started == []


async def store_running(world: PipelineWorld, container: str, lease_seconds: float) -> PipelineRun:
    """A run a previous process left with its first stage RUNNING in `container`."""
    run = await started(world, draft(stage("build"), stage("test")))
    run.status, run.node, run.started_at = RunStatus.RUNNING, "n1", world.clock.now()
    build = run.stage("build")
    build.status, build.container_id, build.started_at = StageStatus.RUNNING, container, world.clock.now()
    build.lease_expires_at = world.clock.now() + timedelta(seconds=lease_seconds)
    async with world.uow() as tx:
        await tx.pipeline_runs.save(run)
        await tx.commit()
    return run


async def test_after_a_restart_a_stage_whose_container_is_gone_ends_in_error() -> None:
    world = pipeline_world(settings=FAST)
    run = await store_running(world, "gone", lease_seconds=60)

    assert await world.executor.resume() == 1
    done = await world.until(run.id, finished)
    await world.executor.close()

    assert done.status is RunStatus.ERROR
    assert statuses(done) == {"build": StageStatus.ERROR, "test": StageStatus.SKIPPED}
    assert "gone" in str(done.stage("build").error)
    assert world.fetcher.fetched == []


async def test_after_a_restart_a_stage_whose_container_still_runs_is_watched_to_its_end() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.output["build"] = stdout("still here")
    spec = WorkloadSpec("worpen-old-build", IMAGE, ("true",), labels={LABEL_STAGE: "build"})
    run = await store_running(world, await runtime.create(spec), lease_seconds=60)

    await world.executor.resume()
    done = await world.until(run.id, finished)
    await world.executor.close()

    assert done.status is RunStatus.SUCCESS
    assert stage_order(world) == ["test"]
    assert [line.text for line in await world.pipelines.logs(run.id, "build", 0, 10)] == ["still here"]
    assert runtime.workloads == {}


async def test_a_stage_whose_lease_ran_out_with_nobody_driving_it_ends_in_error() -> None:
    world = pipeline_world(settings=FAST)
    run = await store_running(world, "worpen-elsewhere", lease_seconds=30)
    world.clock.advance(31)

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.ERROR
    assert statuses(done) == {"build": StageStatus.ERROR, "test": StageStatus.SKIPPED}
    assert str(done.stage("build").error).startswith("lease expired")


async def test_a_run_tells_what_happens_to_it_through_events() -> None:
    world = pipeline_world(settings=FAST)
    world.runtimes["n1"].codes["test"] = 1
    run = await started(world, draft(stage("build"), stage("test"), stage("ship")))

    async with world.serving():
        await world.until(run.id, finished)

    events = [event for event in world.bus.published if isinstance(event, PipelineEvent)]
    assert [type(event) for event in events] == [
        PipelineRunStarted,
        PipelineStageFinished,
        PipelineStageFinished,
        PipelineStageFinished,
        PipelineRunFinished,
    ]
    began, build, test, ship, end = events
    assert isinstance(began, PipelineRunStarted)
    assert began.trigger is TriggerKind.MANUAL
    what = f"pipeline app #1 ({run.id})"
    assert began.line().message == f"{what} started on n1 at {COMMIT[:12]} (manual by ops)"
    assert build.line().message == f"{what} stage build SUCCESS, exit code 0"
    assert build.line().level is Level.SUCCESS
    assert test.line().message == f"{what} stage test FAILED, exit code 1: exited with code 1"
    assert test.line().level is Level.ERROR
    assert ship.line().message == f"{what} stage ship SKIPPED: needs test FAILED"
    assert isinstance(end, PipelineRunFinished)
    assert end.status is RunStatus.FAILED
    assert end.line().message == f"{what} FAILED in 0.0 s: stage test: exited with code 1"
    assert end.line().level is Level.ERROR
    assert all(event.subject == "app" for event in events)
