"""Pipelines' storage ports (definitions, runs, stage logs, secrets), against the fake and SQLite."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from worpen_core.pipelines.model import (
    Pipeline,
    PipelineRun,
    PipelineSecret,
    RunQuery,
    RunStatus,
    StageLogLine,
    StageRun,
    StageSpec,
    StageStatus,
    TriggerKind,
)
from worpen_core.pipelines.ports import PipelinesUnitOfWorkFactory
from worpen_core.shared.errors import Conflict

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

BUILD = StageSpec(
    name="build",
    image="golang:1.23",
    commands=("go build ./...", "echo 'done' > out.txt"),
    env={"CGO_ENABLED": "0", "GOFLAGS": "-mod=vendor"},
    secrets=("REGISTRY_TOKEN",),
    timeout_seconds=600,
    node_labels={"arch": "amd64", "zone": "eu-1"},
)
TEST = StageSpec(name="test", image="golang:1.23", commands=("go test ./...",), depends_on=("build",))
DEPLOY = StageSpec(
    name="deploy",
    image="alpine:3",
    commands=("./deploy.sh",),
    depends_on=("build", "test"),
    approval=True,
)


def pipeline(pipeline_id: str = "api", **changes: object) -> Pipeline:
    values: dict[str, object] = {
        "id": pipeline_id,
        "name": "API service",
        "repository": "https://git.example.com/acme/api.git",
        "branch": "main",
        "stages": (BUILD, TEST, DEPLOY),
        "created_at": T0,
        "updated_at": T0 + timedelta(minutes=5),
        "updated_by": "ops",
        "cron": "0 3 * * *",
        "webhook_secret": b"\x00sealed\xff",
        "keep_on_failure": True,
    }
    values.update(changes)
    return Pipeline(**values)  # type: ignore[arg-type]


def run(run_id: str = "r1", pipeline_id: str = "api", seconds: int = 0, **changes: object) -> PipelineRun:
    """A queued run: no node, no stage started."""
    values: dict[str, object] = {
        "id": run_id,
        "pipeline_id": pipeline_id,
        "pipeline_name": "API service",
        "number": 0,
        "status": RunStatus.PENDING,
        "trigger": TriggerKind.MANUAL,
        "triggered_by": "ops",
        "repository": "https://git.example.com/acme/api.git",
        "branch": "main",
        "commit": None,
        "created_at": T0 + timedelta(seconds=seconds),
        "stages": [StageRun(BUILD), StageRun(TEST), StageRun(DEPLOY)],
    }
    values.update(changes)
    return PipelineRun(**values)  # type: ignore[arg-type]


def finished_run(run_id: str = "r1") -> PipelineRun:
    """A run with every field set, its stages in every shape a stage can be stored in."""
    return run(
        run_id,
        status=RunStatus.FAILED,
        trigger=TriggerKind.RERUN,
        triggered_by="webhook:alice",
        commit="3f1c2a9be0d4c7a1f2e3d4c5b6a7980112233445",
        keep_on_failure=True,
        author="Alice <alice@example.com>",
        message="Fix the build\n\nIt was broken.",
        parent_id="r0",
        node="node-a",
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=90, microseconds=5),
        error="stage test failed",
        stages=[
            StageRun(
                BUILD,
                StageStatus.SUCCESS,
                exit_code=0,
                container_id="c0ffee",
                started_at=T0 + timedelta(seconds=2),
                finished_at=T0 + timedelta(seconds=40),
                lease_expires_at=T0 + timedelta(seconds=100),
            ),
            StageRun(
                TEST,
                StageStatus.FAILED,
                exit_code=2,
                container_id="beef",
                started_at=T0 + timedelta(seconds=41),
                finished_at=T0 + timedelta(seconds=90),
                error="exit code 2",
            ),
            StageRun(DEPLOY, StageStatus.SKIPPED, decided_by="lead"),
        ],
    )


def line(number: int, text: str = "", stream: str = "stdout") -> StageLogLine:
    return StageLogLine(number, stream, text or f"line {number}", T0 + timedelta(milliseconds=number))


def secret(name: str, value: bytes, seconds: int = 0, by: str = "admin") -> PipelineSecret:
    at = T0 + timedelta(seconds=seconds)
    return PipelineSecret(name, value, created_at=at, updated_at=at, updated_by=by)


def ids(runs: list[PipelineRun]) -> list[str]:
    return [found.id for found in runs]


async def add_runs(uow: PipelinesUnitOfWorkFactory, *runs: PipelineRun) -> None:
    async with uow() as tx:
        for added in runs:
            await tx.pipeline_runs.add(added)
        await tx.commit()


async def test_definitions_come_back_whole_ordered_by_id(uow: PipelinesUnitOfWorkFactory) -> None:
    bare = pipeline("a-lib", stages=(TEST,), cron=None, webhook_secret=None, keep_on_failure=False)
    async with uow() as tx:
        await tx.pipelines.add(pipeline())
        await tx.pipelines.add(bare)
        await tx.commit()

    async with uow() as tx:
        assert await tx.pipelines.get("api") == pipeline()
        assert await tx.pipelines.get("a-lib") == bare
        assert await tx.pipelines.get("nope") is None
        assert await tx.pipelines.list_all() == [bare, pipeline()]
        stored = await tx.pipelines.get("api")
        assert stored is not None
        assert stored.stages[0].commands == ("go build ./...", "echo 'done' > out.txt")
        assert stored.stages[0].node_labels == {"arch": "amd64", "zone": "eu-1"}
        assert stored.stages[2].depends_on == ("build", "test")
        assert stored.created_at.tzinfo is not None


async def test_a_definition_is_updated_and_deleted(uow: PipelinesUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.pipelines.add(pipeline())
        await tx.commit()

    changed = pipeline(
        name="API",
        branch="release",
        stages=(BUILD,),
        cron=None,
        webhook_secret=None,
        keep_on_failure=False,
        updated_at=T0 + timedelta(hours=1),
        updated_by="lead",
    )
    async with uow() as tx:
        await tx.pipelines.update(changed)
        await tx.pipelines.update(pipeline("gone"))
        await tx.commit()
    async with uow() as tx:
        assert await tx.pipelines.list_all() == [changed]

    async with uow() as tx:
        assert await tx.pipelines.delete("api") is True
        assert await tx.pipelines.delete("api") is False
        await tx.commit()
    async with uow() as tx:
        assert await tx.pipelines.get("api") is None
        assert await tx.pipelines.list_all() == []


async def test_a_definition_id_is_taken_once(uow: PipelinesUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.pipelines.add(pipeline())
        await tx.commit()

    async def add_twin() -> None:
        async with uow() as tx:
            await tx.pipelines.add(pipeline(name="another"))
            await tx.commit()

    with pytest.raises(Conflict, match="api"):
        await add_twin()
    async with uow() as tx:
        assert await tx.pipelines.list_all() == [pipeline()]


async def test_a_cron_slot_starts_one_run(uow: PipelinesUnitOfWorkFactory) -> None:
    three = T0.replace(hour=3)
    async with uow() as tx:
        await tx.pipelines.add(pipeline())
        await tx.commit()

    async with uow() as tx:
        assert await tx.pipelines.cron_slot("api") is None
        assert await tx.pipelines.claim_cron_slot("api", three) is True
        await tx.commit()
    async with uow() as tx:
        assert await tx.pipelines.claim_cron_slot("api", three) is False
        assert await tx.pipelines.claim_cron_slot("api", three - timedelta(days=1)) is False
        assert await tx.pipelines.claim_cron_slot("gone", three) is False
        await tx.commit()
    async with uow() as tx:
        assert await tx.pipelines.cron_slot("api") == three
        assert await tx.pipelines.claim_cron_slot("api", three + timedelta(days=1)) is True
        await tx.pipelines.update(pipeline(name="renamed"))  # an edit keeps the claimed slot
        await tx.commit()
    async with uow() as tx:
        slot = await tx.pipelines.cron_slot("api")
        assert slot == three + timedelta(days=1)
        assert slot.tzinfo is not None
        assert await tx.pipelines.cron_slot("gone") is None


async def test_runs_come_back_whole_with_their_stages(uow: PipelinesUnitOfWorkFactory) -> None:
    queued = run("r2", seconds=5)
    async with uow() as tx:
        assert await tx.pipeline_runs.add(finished_run()) == 1
        assert await tx.pipeline_runs.add(queued) == 2
        await tx.commit()
    assert queued.number == 2

    async with uow() as tx:
        assert await tx.pipeline_runs.get("r1") == replace(finished_run(), number=1)
        assert await tx.pipeline_runs.get("r2") == replace(run("r2", seconds=5), number=2)
        assert await tx.pipeline_runs.get("nope") is None
        stored = await tx.pipeline_runs.get("r1")
        assert stored is not None
        assert [stage.name for stage in stored.stages] == ["build", "test", "deploy"]
        assert stored.stage("build").spec == BUILD
        build = stored.stage("build")
        assert build.spec.secrets == ("REGISTRY_TOKEN",)
        assert build.started_at is not None
        assert build.started_at.tzinfo is not None
        assert stored.stage("deploy").spec.approval is True


async def test_runs_are_numbered_within_their_pipeline(uow: PipelinesUnitOfWorkFactory) -> None:
    async with uow() as tx:
        numbers = [
            await tx.pipeline_runs.add(run("a1", "api")),
            await tx.pipeline_runs.add(run("w1", "web")),
            await tx.pipeline_runs.add(run("a2", "api")),
        ]
        await tx.commit()
    async with uow() as tx:
        numbers.append(await tx.pipeline_runs.add(run("w2", "web")))
        numbers.append(await tx.pipeline_runs.add(run("a3", "api")))
        await tx.commit()

    assert numbers == [1, 1, 2, 2, 3]
    async with uow() as tx:
        found = await tx.pipeline_runs.get("a3")
        assert found is not None
        assert found.number == 3


async def test_a_run_id_is_stored_once(uow: PipelinesUnitOfWorkFactory) -> None:
    await add_runs(uow, run("r1"))
    with pytest.raises(Conflict):
        await add_runs(uow, run("r1", "web"))
    async with uow() as tx:
        assert await tx.pipeline_runs.latest() == {"api": replace(run("r1"), number=1)}


async def test_a_save_writes_the_run_and_its_stages_but_not_their_line_counts(
    uow: PipelinesUnitOfWorkFactory,
) -> None:
    await add_runs(uow, run("r1"))
    async with uow() as tx:
        await tx.stage_logs.append("r1", "build", [line(1), line(2), line(3)])
        await tx.commit()

    async with uow() as tx:
        loaded = await tx.pipeline_runs.get("r1")
        assert loaded is not None
        finished = finished_run()
        finished.number = loaded.number
        finished.stages[0].log_lines = 99  # what `append` keeps, a save leaves alone
        await tx.pipeline_runs.save(finished)
        await tx.commit()

    async with uow() as tx:
        stored = await tx.pipeline_runs.get("r1")
    expected = finished_run()
    expected.number = 1
    expected.stages[0].log_lines = 3
    assert stored == expected


async def test_runs_are_queried_newest_first_by_pipeline_and_status_a_page_at_a_time(
    uow: PipelinesUnitOfWorkFactory,
) -> None:
    await add_runs(
        uow,
        run("a1", "api", status=RunStatus.SUCCESS),
        run("w1", "web", status=RunStatus.FAILED),
        run("a2", "api", status=RunStatus.FAILED),
        run("a3", "api", status=RunStatus.SUCCESS),
        run("w2", "web"),
        run("a4", "api"),
    )

    async with uow() as tx:
        runs = tx.pipeline_runs
        assert ids(await runs.query(RunQuery())) == ["a4", "w2", "a3", "a2", "w1", "a1"]
        assert ids(await runs.query(RunQuery(limit=2))) == ["a4", "w2"]
        assert ids(await runs.query(RunQuery(pipeline_id="api"))) == ["a4", "a3", "a2", "a1"]
        assert ids(await runs.query(RunQuery(status=RunStatus.FAILED))) == ["a2", "w1"]
        failed_web = RunQuery(pipeline_id="web", status=RunStatus.FAILED)
        assert ids(await runs.query(failed_web)) == ["w1"]
        assert await runs.query(RunQuery(pipeline_id="nope")) == []

        first = await runs.query(RunQuery(pipeline_id="api", limit=2))
        assert ids(first) == ["a4", "a3"]
        second = await runs.query(RunQuery(pipeline_id="api", limit=2, before_number=first[-1].number))
        assert ids(second) == ["a2", "a1"]
        assert await runs.query(RunQuery(pipeline_id="api", limit=2, before_number=1)) == []
        [found] = await runs.query(RunQuery(pipeline_id="web", status=RunStatus.FAILED))
        assert [stage.name for stage in found.stages] == ["build", "test", "deploy"]


async def test_the_latest_run_of_each_pipeline(uow: PipelinesUnitOfWorkFactory) -> None:
    async with uow() as tx:
        assert await tx.pipeline_runs.latest() == {}
    await add_runs(uow, run("a1", "api"), run("w1", "web"), run("a2", "api", status=RunStatus.RUNNING))

    async with uow() as tx:
        latest = await tx.pipeline_runs.latest()
    assert {pipeline_id: found.id for pipeline_id, found in latest.items()} == {"api": "a2", "web": "w1"}
    assert latest["api"].status is RunStatus.RUNNING
    assert [stage.name for stage in latest["web"].stages] == ["build", "test", "deploy"]


async def test_pending_runs_wait_in_order_and_active_ones_hold_their_node(
    uow: PipelinesUnitOfWorkFactory,
) -> None:
    await add_runs(
        uow,
        run("p1", "api"),
        run("x1", "web", status=RunStatus.RUNNING, node="node-a"),
        run("p2", "web"),
        run("x2", "api", status=RunStatus.BLOCKED, node="node-a"),
        run("x3", "lib", status=RunStatus.RUNNING, node="node-b"),
        run("d1", "lib", status=RunStatus.SUCCESS, node="node-b"),
        run("p3", "api"),
    )

    async with uow() as tx:
        assert ids(await tx.pipeline_runs.pending()) == ["p1", "p2", "p3"]
        assert ids(await tx.pipeline_runs.active()) == ["x1", "x2", "x3"]
        assert await tx.pipeline_runs.used_slots() == {"node-a": 2, "node-b": 1}
        [first, *_] = await tx.pipeline_runs.pending()
        assert [stage.status for stage in first.stages] == [StageStatus.PENDING] * 3


async def test_a_node_is_reserved_up_to_its_limit(uow: PipelinesUnitOfWorkFactory) -> None:
    await add_runs(uow, run("r1"), run("r2"), run("r3"), run("r4", "web"))
    at = T0 + timedelta(minutes=1)

    async with uow() as tx:
        assert await tx.pipeline_runs.reserve("r1", "node-a", 2, at) is True
        assert await tx.pipeline_runs.reserve("r2", "node-a", 2, at) is True
        assert await tx.pipeline_runs.reserve("r3", "node-a", 2, at) is False
        assert await tx.pipeline_runs.reserve("r4", "node-b", 2, at) is True
        assert await tx.pipeline_runs.reserve("r1", "node-b", 2, at) is False  # no longer PENDING
        assert await tx.pipeline_runs.reserve("gone", "node-b", 2, at) is False
        await tx.commit()

    async with uow() as tx:
        reserved = await tx.pipeline_runs.get("r1")
        assert reserved is not None
        assert (reserved.status, reserved.node, reserved.started_at) == (RunStatus.RUNNING, "node-a", at)
        waiting = await tx.pipeline_runs.get("r3")
        assert waiting is not None
        assert (waiting.status, waiting.node, waiting.started_at) == (RunStatus.PENDING, None, None)
        assert ids(await tx.pipeline_runs.pending()) == ["r3"]
        assert await tx.pipeline_runs.used_slots() == {"node-a": 2, "node-b": 1}

    async with uow() as tx:
        finished = await tx.pipeline_runs.get("r1")
        assert finished is not None
        finished.status = RunStatus.SUCCESS
        await tx.pipeline_runs.save(finished)
        assert await tx.pipeline_runs.reserve("r3", "node-a", 2, at) is True  # a slot freed
        await tx.commit()


async def test_only_a_pending_run_is_cancelled_with_its_stages(uow: PipelinesUnitOfWorkFactory) -> None:
    await add_runs(uow, run("r1"), run("r2"))
    at = T0 + timedelta(minutes=2)
    async with uow() as tx:
        assert await tx.pipeline_runs.reserve("r2", "node-a", 4, at) is True
        await tx.commit()

    async with uow() as tx:
        assert await tx.pipeline_runs.cancel_pending("r1", "ops", at) is True
        assert await tx.pipeline_runs.cancel_pending("r1", "ops", at) is False
        assert await tx.pipeline_runs.cancel_pending("r2", "ops", at) is False
        assert await tx.pipeline_runs.cancel_pending("gone", "ops", at) is False
        await tx.commit()

    async with uow() as tx:
        cancelled = await tx.pipeline_runs.get("r1")
        running = await tx.pipeline_runs.get("r2")
    assert cancelled is not None
    assert (cancelled.status, cancelled.cancelled_by, cancelled.finished_at) == (
        RunStatus.CANCELLED,
        "ops",
        at,
    )
    assert [stage.status for stage in cancelled.stages] == [StageStatus.CANCELLED] * 3
    assert running is not None
    assert running.status is RunStatus.RUNNING
    assert running.cancelled_by is None
    assert [stage.status for stage in running.stages] == [StageStatus.PENDING] * 3


async def test_running_stages_whose_lease_ended_are_found(uow: PipelinesUnitOfWorkFactory) -> None:
    def running(run_id: str, lease: int | None) -> PipelineRun:
        started = run(run_id, status=RunStatus.RUNNING, node="node-a")
        started.stages[0].status = StageStatus.RUNNING
        started.stages[0].lease_expires_at = None if lease is None else T0 + timedelta(seconds=lease)
        return started

    finished = running("done", 10)
    finished.stages[0].status = StageStatus.SUCCESS
    await add_runs(
        uow, running("r1", 30), running("r2", 10), running("r3", 60), running("r4", None), finished
    )
    async with uow() as tx:
        late = await tx.pipeline_runs.get("r3")
        assert late is not None
        late.stages[1].status = StageStatus.RUNNING
        late.stages[1].lease_expires_at = T0
        await tx.pipeline_runs.save(late)
        await tx.commit()

    now = T0 + timedelta(seconds=45)
    async with uow() as tx:
        assert await tx.pipeline_runs.expired(now) == [("r3", "test"), ("r2", "build"), ("r1", "build")]
        await tx.pipeline_runs.extend_lease("r1", "build", now + timedelta(seconds=60))
        await tx.pipeline_runs.extend_lease("r3", "test", now + timedelta(seconds=60))
        await tx.commit()

    async with uow() as tx:
        assert await tx.pipeline_runs.expired(now) == [("r2", "build")]
        assert await tx.pipeline_runs.expired(T0) == []
        extended = await tx.pipeline_runs.get("r1")
        assert extended is not None
        assert extended.stage("build").lease_expires_at == now + timedelta(seconds=60)


async def test_stage_output_holding_nul_characters_is_stored(
    uow: PipelinesUnitOfWorkFactory, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL cannot store U+0000: it keeps U+FFFD in its place rather than refusing the output."""
    kept = "\ufffd" if request.node.callspec.params["uow"] == "postgresql" else "\x00"
    await add_runs(uow, run("r1"))
    async with uow() as tx:
        await tx.stage_logs.append("r1", "build", [line(1, "binary\x00output")])
        await tx.commit()

    async with uow() as tx:
        assert await tx.stage_logs.read("r1", "build", 0, 10) == [line(1, f"binary{kept}output")]


async def test_stage_logs_are_appended_and_read_by_range(uow: PipelinesUnitOfWorkFactory) -> None:
    await add_runs(uow, run("r1"))
    async with uow() as tx:
        await tx.stage_logs.append("r1", "build", [line(1, "compiling"), line(2, "warning: x", "stderr")])
        await tx.stage_logs.append("r1", "test", [line(1, "ok")])
        await tx.stage_logs.append("r1", "build", [])
        await tx.commit()
    async with uow() as tx:
        await tx.stage_logs.append("r1", "build", [line(n) for n in range(3, 8)])
        await tx.commit()

    async with uow() as tx:
        logs = tx.stage_logs
        everything = await logs.read("r1", "build", 0, 100)
        assert [found.number for found in everything] == [1, 2, 3, 4, 5, 6, 7]
        assert everything[:2] == [line(1, "compiling"), line(2, "warning: x", "stderr")]
        assert everything[0].at.tzinfo is not None
        assert [found.number for found in await logs.read("r1", "build", 2, 3)] == [3, 4, 5]
        assert [found.number for found in await logs.read("r1", "build", 5, 100)] == [6, 7]
        assert await logs.read("r1", "build", 7, 100) == []
        assert await logs.read("r1", "test", 0, 100) == [line(1, "ok")]
        assert await logs.read("r1", "deploy", 0, 100) == []
        stored = await tx.pipeline_runs.get("r1")
    assert stored is not None
    assert [stage.log_lines for stage in stored.stages] == [7, 1, 0]


async def test_secrets_are_upserted_listed_and_deleted(uow: PipelinesUnitOfWorkFactory) -> None:
    async with uow() as tx:
        assert await tx.secrets.put(secret("TOKEN", b"sealed-1")) is True
        assert await tx.secrets.put(secret("API_KEY", b"sealed-2")) is True
        await tx.commit()

    replaced = secret("TOKEN", b"sealed-3", seconds=60, by="lead")
    async with uow() as tx:
        assert await tx.secrets.put(replaced) is False
        await tx.commit()

    kept = replace(replaced, created_at=T0)
    async with uow() as tx:
        assert await tx.secrets.list_all() == [secret("API_KEY", b"sealed-2"), kept]
        assert await tx.secrets.get_many(["TOKEN", "MISSING"]) == {"TOKEN": kept}
        assert await tx.secrets.get_many([]) == {}
        found = await tx.secrets.get_many(["API_KEY", "TOKEN"])
        assert set(found) == {"API_KEY", "TOKEN"}
        assert found["TOKEN"].updated_at.tzinfo is not None

    async with uow() as tx:
        assert await tx.secrets.delete("TOKEN") is True
        assert await tx.secrets.delete("TOKEN") is False
        await tx.commit()
    async with uow() as tx:
        assert await tx.secrets.list_all() == [secret("API_KEY", b"sealed-2")]


async def test_nothing_is_stored_without_a_commit(uow: PipelinesUnitOfWorkFactory) -> None:
    async with uow() as tx:
        await tx.pipelines.add(pipeline("kept"))
        await tx.pipeline_runs.add(run("kept"))
        await tx.commit()

    async with uow() as tx:
        await tx.pipelines.add(pipeline())
        await tx.pipelines.delete("kept")
        await tx.pipelines.claim_cron_slot("kept", T0)
        await tx.pipeline_runs.add(run("r1"))
        await tx.pipeline_runs.reserve("kept", "node-a", 1, T0)
        await tx.stage_logs.append("kept", "build", [line(1)])
        await tx.secrets.put(secret("TOKEN", b"x"))
        assert await tx.pipelines.get("api") == pipeline()  # a transaction sees its own writes
        assert ids(await tx.pipeline_runs.active()) == ["kept"]

    async with uow() as tx:
        assert [stored.id for stored in await tx.pipelines.list_all()] == ["kept"]
        assert await tx.pipelines.cron_slot("kept") is None
        assert ids(await tx.pipeline_runs.query(RunQuery())) == ["kept"]
        assert ids(await tx.pipeline_runs.pending()) == ["kept"]
        assert await tx.stage_logs.read("kept", "build", 0, 10) == []
        assert await tx.secrets.list_all() == []
        assert await tx.pipeline_runs.add(run("r2")) == 2  # a rolled-back run's number is free again
