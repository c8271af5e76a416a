"""Cancels and approvals asked on a replica that does not drive the run: the replica driving it takes the
request from the shared store, carries it out as it would its own, and the asker answers what it would
have (the run, or the same Conflict); 503 when no replica takes it in time."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.pipeline_requests import FakePipelineRequests
from tests.fakes.pipelines_support import (
    KILLED,
    OPERATOR,
    PipelineWorld,
    draft,
    eventually,
    pipeline_world,
    stage,
)
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.pipelines.executor import ExecutorSettings
from worpen_core.pipelines.model import PipelineRun, RunStatus, StageStatus
from worpen_core.shared.errors import Conflict, Unavailable

FAST = ExecutorSettings(tick_seconds=0.05, relay_seconds=0.5)


async def replicas(
    *stages: str, approval: str | None = None, requests: FakePipelineRequests | None = None
) -> tuple[PipelineWorld, PipelineWorld, str]:
    """The leader (it will drive the run) and another replica on one store, and a queued run."""
    uow = FakeUnitOfWorkFactory()
    requests = requests or FakePipelineRequests()
    leader = pipeline_world(settings=FAST, uow=uow, requests=requests)
    other = pipeline_world(settings=FAST, uow=uow, requests=requests)
    drafts = [stage(name, approval=name == approval) for name in stages]
    await leader.pipelines.create(OPERATOR, draft(*drafts))
    run = await other.pipelines.trigger(OPERATOR, "app")
    return leader, other, run.id


def blocked(run: PipelineRun) -> bool:
    return run.status is RunStatus.BLOCKED


async def test_a_running_run_is_cancelled_through_the_replica_that_does_not_drive_it() -> None:
    leader, other, run_id = await replicas("build", "test")
    runtime = leader.runtimes["n1"]
    runtime.holds["build"] = asyncio.Event()

    async with leader.serving():
        await eventually(lambda: "build" in runtime.waiting)
        cancelled = await other.pipelines.cancel(OPERATOR, run_id)

    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.error == "cancelled by ops"
    assert cancelled.stage("build").status is StageStatus.CANCELLED
    assert cancelled.stage("build").exit_code == KILLED
    assert runtime.workloads == {}
    assert other.runtimes["n1"].stops == []


async def test_an_approval_through_the_other_replica_lets_the_run_proceed() -> None:
    leader, other, run_id = await replicas("build", "deploy", approval="deploy")

    async with leader.serving():
        await leader.until(run_id, blocked)
        approved = await other.pipelines.approve(OPERATOR, run_id, "deploy")
        assert approved.stage("deploy").decided_by == "ops"
        done = await leader.until(run_id, lambda run: run.status.finished)

    assert done.status is RunStatus.SUCCESS
    assert done.stage("deploy").status is StageStatus.SUCCESS


async def test_a_decline_through_the_other_replica_cancels_the_run() -> None:
    leader, other, run_id = await replicas("build", "deploy", approval="deploy")

    async with leader.serving():
        await leader.until(run_id, blocked)
        await other.pipelines.decline(OPERATOR, run_id, "deploy")
        done = await leader.until(run_id, lambda run: run.status.finished)

    assert done.status is RunStatus.CANCELLED
    assert done.stage("deploy").error == "declined by ops"


async def test_the_driving_replicas_conflict_comes_back_word_for_word() -> None:
    leader, other, run_id = await replicas("build", "deploy", "notify", approval="deploy")

    async with leader.serving():
        await leader.until(run_id, blocked)
        with pytest.raises(Conflict) as relayed:
            await other.pipelines.approve(OPERATOR, run_id, "notify")
        with pytest.raises(Conflict) as local:
            await leader.pipelines.approve(OPERATOR, run_id, "notify")
        await leader.pipelines.approve(OPERATOR, run_id, "deploy")
        await leader.until(run_id, lambda run: run.status.finished)

    assert str(relayed.value) == str(local.value) == "stage 'notify' is PENDING, not waiting for an approval"
    with pytest.raises(Conflict, match="is not waiting for an approval"):
        await other.pipelines.approve(OPERATOR, run_id, "deploy")
    with pytest.raises(Conflict, match="already finished"):
        await other.pipelines.cancel(OPERATOR, run_id)


async def test_no_replica_taking_the_request_answers_503_and_leaves_nothing_behind() -> None:
    requests = FakePipelineRequests()
    leader, other, run_id = await replicas("build", "deploy", approval="deploy", requests=requests)
    async with leader.serving():
        await leader.until(run_id, blocked)

    with pytest.raises(Unavailable, match="no replica took the approve"):
        await other.pipelines.approve(OPERATOR, run_id, "deploy")
    with pytest.raises(Unavailable, match="no replica took the cancel"):
        await other.pipelines.cancel(OPERATOR, run_id)

    assert requests.rows == {}
    assert (await other.run_of(run_id)).status is RunStatus.BLOCKED


async def test_one_process_without_replicas_answers_as_before() -> None:
    world = pipeline_world(settings=FAST)
    run = await world.pipelines.create(OPERATOR, draft(stage("build"), stage("deploy", approval=True)))
    queued = await world.pipelines.trigger(OPERATOR, run.id)

    async with world.serving():
        await world.until(queued.id, blocked)
    with pytest.raises(Conflict, match="is not waiting for an approval"):
        await world.pipelines.approve(OPERATOR, queued.id, "deploy")
    with pytest.raises(Conflict, match="being placed on a node"):
        await world.pipelines.cancel(OPERATOR, queued.id)
