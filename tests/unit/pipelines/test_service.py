"""The use cases around runs: who may do what, definitions and their webhook keys, secrets that are never
shown, manual triggers of a branch or commit, re-runs of what ran, kept failures, and runs that go on
while the database is away."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.pipelines_support import (
    ADMIN,
    OPERATOR,
    draft,
    eventually,
    pipeline_world,
    stage,
)
from worpen_core.access.model import Principal, Role
from worpen_core.pipelines.executor import ExecutorSettings
from worpen_core.pipelines.model import PipelineRun, RunQuery, RunStatus, StageStatus, TriggerKind
from worpen_core.shared.errors import Conflict, Forbidden, InvalidInput, NotFound

VIEWER = Principal("key-view", "eve", Role.VIEWER)
FAST = ExecutorSettings(tick_seconds=0.05)


def finished(run: PipelineRun) -> bool:
    return run.status.finished


async def test_viewers_change_nothing_and_only_admins_write_secrets() -> None:
    world = pipeline_world()
    await world.pipelines.create(OPERATOR, draft(stage("build")))

    with pytest.raises(Forbidden):
        await world.pipelines.create(VIEWER, draft(stage("build"), pipeline_id="other"))
    with pytest.raises(Forbidden):
        await world.pipelines.trigger(VIEWER, "app")
    with pytest.raises(Forbidden):
        await world.pipelines.put_secret(OPERATOR, "TOKEN", "hunter22")
    assert await world.pipelines.runs(RunQuery()) == []
    assert await world.pipelines.secrets() == []


async def test_a_pipeline_id_is_taken_once() -> None:
    world = pipeline_world()
    await world.pipelines.create(OPERATOR, draft(stage("build")))

    with pytest.raises(Conflict):
        await world.pipelines.create(OPERATOR, draft(stage("test")))
    with pytest.raises(InvalidInput):
        await world.pipelines.update(OPERATOR, "app", draft(stage("test"), pipeline_id="renamed"))


async def test_an_update_keeps_the_webhook_key_unless_given_and_an_empty_one_removes_it() -> None:
    world = pipeline_world()
    created = await world.pipelines.create(OPERATOR, draft(stage("build"), webhook_secret="first-key"))
    assert created.webhook_secret is not None
    assert world.cipher.open(created.webhook_secret) == "first-key"

    kept = await world.pipelines.update(OPERATOR, "app", draft(stage("build"), stage("test")))
    assert kept.webhook_secret == created.webhook_secret
    assert kept.created_at == created.created_at
    changed = await world.pipelines.update(
        OPERATOR, "app", draft(stage("build"), webhook_secret="second-key")
    )
    assert changed.webhook_secret is not None
    assert world.cipher.open(changed.webhook_secret) == "second-key"
    removed = await world.pipelines.update(OPERATOR, "app", draft(stage("build"), webhook_secret=""))
    assert removed.webhook_secret is None
    assert (await world.pipelines.definition("app")).webhook_secret is None


async def test_a_secret_is_stored_sealed_and_replaced_in_place() -> None:
    world = pipeline_world()

    secret, created = await world.pipelines.put_secret(ADMIN, "TOKEN", "hunter22")
    again, created_again = await world.pipelines.put_secret(ADMIN, "TOKEN", "hunter23")

    assert created
    assert not created_again
    assert b"hunter2" not in secret.sealed
    assert world.cipher.open(again.sealed) == "hunter23"
    assert [stored.name for stored in await world.pipelines.secrets()] == ["TOKEN"]
    with pytest.raises(InvalidInput):
        await world.pipelines.put_secret(ADMIN, "TOKEN", "")
    await world.pipelines.delete_secret(ADMIN, "TOKEN")
    with pytest.raises(NotFound):
        await world.pipelines.delete_secret(ADMIN, "TOKEN")


async def test_a_manual_trigger_may_name_a_branch_and_a_commit() -> None:
    world = pipeline_world(settings=FAST)
    await world.pipelines.create(OPERATOR, draft(stage("build")))

    with pytest.raises(InvalidInput):
        await world.pipelines.trigger(OPERATOR, "app", commit="not-a-sha")
    with pytest.raises(InvalidInput):
        await world.pipelines.trigger(OPERATOR, "app", branch="a..b")
    with pytest.raises(NotFound):
        await world.pipelines.trigger(OPERATOR, "nothing")
    run = await world.pipelines.trigger(OPERATOR, "app", branch="release/1.2", commit="abc1234")
    async with world.serving():
        done = await world.until(run.id, finished)

    assert world.fetcher.fetched == [("https://git.example.com/team/app.git", "release/1.2", "abc1234")]
    assert done.branch == "release/1.2"
    assert done.commit == "abc1234"
    assert done.status is RunStatus.SUCCESS


async def test_a_rerun_runs_the_same_commit_with_the_same_stages() -> None:
    world = pipeline_world(settings=FAST)
    await world.pipelines.create(OPERATOR, draft(stage("build"), stage("test")))
    first = await world.pipelines.trigger(OPERATOR, "app")
    async with world.serving():
        original = await world.until(first.id, finished)
    await world.pipelines.update(OPERATOR, "app", draft(stage("lint")))

    rerun = await world.pipelines.rerun(OPERATOR, first.id)

    assert rerun.trigger is TriggerKind.RERUN
    assert rerun.parent_id == first.id
    assert rerun.number == 2
    assert rerun.commit == original.commit
    assert [stage.name for stage in rerun.stages] == ["build", "test"]


async def test_a_run_of_a_deleted_pipeline_can_be_rerun() -> None:
    world = pipeline_world()
    await world.pipelines.create(OPERATOR, draft(stage("build")))
    first = await world.pipelines.trigger(OPERATOR, "app")
    await world.pipelines.delete(OPERATOR, "app")

    rerun = await world.pipelines.rerun(OPERATOR, first.id)

    assert rerun.pipeline_id == "app"
    assert [stage.name for stage in rerun.stages] == ["build"]
    assert [pipeline.id for pipeline, _ in await world.pipelines.overview()] == []


async def test_the_overview_shows_each_pipelines_newest_run() -> None:
    world = pipeline_world()
    await world.pipelines.create(OPERATOR, draft(stage("build")))
    await world.pipelines.create(OPERATOR, draft(stage("build"), pipeline_id="docs"))
    await world.pipelines.trigger(OPERATOR, "app")
    newest = await world.pipelines.trigger(OPERATOR, "app")

    overview = await world.pipelines.overview()

    assert [(pipeline.id, run.id if run else None) for pipeline, run in overview] == [
        ("app", newest.id),
        ("docs", None),
    ]


async def test_a_failed_run_keeps_its_containers_and_workspace_when_asked_to() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    runtime.codes["test"] = 1
    await world.pipelines.create(OPERATOR, draft(stage("build"), stage("test"), keep_on_failure=True))
    run = await world.pipelines.trigger(OPERATOR, "app")

    async with world.serving():
        done = await world.until(run.id, finished)

    assert done.status is RunStatus.FAILED
    assert [spec.name for spec in runtime.workloads.values()] == [f"worpen-{run.id}-test"]
    assert list(runtime.volume_labels) == [f"worpen-{run.id}-workspace"]


async def test_a_run_goes_on_while_the_database_is_away_and_is_written_when_it_is_back() -> None:
    world = pipeline_world(settings=FAST)
    runtime = world.runtimes["n1"]
    hold = runtime.holds["build"] = asyncio.Event()
    await world.pipelines.create(OPERATOR, draft(stage("build"), stage("test")))
    run = await world.pipelines.trigger(OPERATOR, "app")

    async with world.serving():
        await eventually(lambda: "build" in runtime.waiting)
        world.uow.store.broken = True
        hold.set()
        await asyncio.sleep(0.3)
        world.uow.store.broken = False
        done = await world.until(run.id, finished, seconds=10)

    assert done.status is RunStatus.SUCCESS
    assert {stage.status for stage in done.stages} == {StageStatus.SUCCESS}
