"""What starts runs besides an operator: a push webhook signed with a pipeline's secret, for its repository
however the forge spells it and for its branch only; and cron slots, one run each, one run after an
outage however many slots it missed."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests.fakes.pipelines_support import OPERATOR, PipelineWorld, draft, pipeline_world, stage
from worpen_core.pipelines.model import RunQuery, RunStatus, TriggerKind
from worpen_core.pipelines.service import PushEvent
from worpen_core.shared.errors import Unauthenticated

KEY = "webhook-key-1"
BODY = b'{"ref": "refs/heads/main"}'
HTTPS = "https://git.example.com/team/app.git"


def signed(body: bytes = BODY, key: str = KEY) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def push(*repositories: str, branch: str | None = "main", commit: str | None = "ab" * 20) -> PushEvent:
    return PushEvent(repositories or (HTTPS,), branch, commit, "alice")


async def hooked(repository: str = HTTPS, branch: str = "main", key: str | None = KEY) -> PipelineWorld:
    world = pipeline_world()
    await world.pipelines.create(
        OPERATOR, draft(stage("build"), repository=repository, branch=branch, webhook_secret=key)
    )
    return world


async def test_a_signed_push_starts_a_run_of_the_pushed_commit() -> None:
    world = await hooked()

    (run,) = await world.pipelines.webhook(BODY, signed(), push())

    assert run.trigger is TriggerKind.WEBHOOK
    assert run.triggered_by == "webhook:alice"
    assert run.status is RunStatus.PENDING
    assert run.branch == "main"
    assert run.commit == "ab" * 20
    assert [stored.id for stored in await world.pipelines.runs(RunQuery())] == [run.id]


async def test_the_signature_may_come_without_its_prefix_and_in_capitals() -> None:
    world = await hooked()

    runs = await world.pipelines.webhook(BODY, signed().removeprefix("sha256=").upper(), push())

    assert len(runs) == 1


@pytest.mark.parametrize(
    "signature", [None, "", "sha256=", signed(key="another-key"), signed(body=b"{}"), "sha256=zz"]
)
async def test_a_push_without_a_good_signature_is_refused(signature: str | None) -> None:
    world = await hooked()

    with pytest.raises(Unauthenticated):
        await world.pipelines.webhook(BODY, signature, push())

    assert await world.pipelines.runs(RunQuery()) == []


async def test_a_pipeline_without_a_webhook_secret_is_not_started_by_pushes() -> None:
    world = await hooked(key=None)

    with pytest.raises(Unauthenticated):
        await world.pipelines.webhook(BODY, signed(), push())


@pytest.mark.parametrize(
    ("defined", "pushed"),
    [
        ("https://git.example.com/team/app", "https://git.example.com/team/app.git"),
        ("https://git.example.com/team/app.git", "https://git.example.com/team/app/"),
        ("https://Git.Example.com/team/app", "http://user:token@git.example.com/team/app.git"),
        ("git@git.example.com:team/app.git", "https://git.example.com/team/app.git"),
        ("https://git.example.com/team/app.git", "ssh://git@git.example.com:2222/team/app.git"),
    ],
)
async def test_the_pushed_repository_matches_however_it_is_spelled(defined: str, pushed: str) -> None:
    world = await hooked(repository=defined)

    runs = await world.pipelines.webhook(BODY, signed(), push("", pushed))

    assert len(runs) == 1


@pytest.mark.parametrize(
    "pushed", ["https://git.example.com/team/other.git", "https://elsewhere.example.com/team/app.git"]
)
async def test_a_push_of_another_repository_starts_nothing(pushed: str) -> None:
    world = await hooked()

    with pytest.raises(Unauthenticated):
        await world.pipelines.webhook(BODY, signed(), push(pushed))


async def test_a_push_to_another_branch_a_tag_or_a_deletion_starts_nothing() -> None:
    world = await hooked()

    assert await world.pipelines.webhook(BODY, signed(), push(branch="dev")) == []
    assert await world.pipelines.webhook(BODY, signed(), push(branch=None)) == []
    assert await world.pipelines.webhook(BODY, signed(), push(commit="0" * 40)) == []
    assert await world.pipelines.runs(RunQuery()) == []


async def test_each_pipeline_of_the_repository_checks_the_signature_with_its_own_key() -> None:
    world = await hooked()
    await world.pipelines.create(
        OPERATOR, draft(stage("build"), pipeline_id="docs", repository=HTTPS, webhook_secret="docs-key-1")
    )

    (run,) = await world.pipelines.webhook(BODY, signed(key="docs-key-1"), push())

    assert run.pipeline_id == "docs"


async def scheduled() -> PipelineWorld:
    world = pipeline_world()
    await world.pipelines.create(OPERATOR, draft(stage("build"), cron="* * * * *"))
    return world


async def cron_runs(world: PipelineWorld) -> int:
    runs = await world.pipelines.runs(RunQuery())
    assert all(run.trigger is TriggerKind.CRON and run.triggered_by == "cron" for run in runs)
    return len(runs)


async def test_each_cron_slot_starts_one_run() -> None:
    world = await scheduled()

    world.clock.advance(30)
    assert await world.pipelines.fire_schedules() == 0
    world.clock.advance(30)
    assert await world.pipelines.fire_schedules() == 1
    assert await world.pipelines.fire_schedules() == 0
    world.clock.advance(59)
    assert await world.pipelines.fire_schedules() == 0
    world.clock.advance(1)
    assert await world.pipelines.fire_schedules() == 1

    assert await cron_runs(world) == 2


async def test_slots_missed_during_an_outage_start_one_run_not_a_burst() -> None:
    world = await scheduled()

    world.clock.advance(3 * 3600 + 5)
    fired = [await world.pipelines.fire_schedules() for _ in range(3)]

    assert fired == [1, 0, 0]
    world.clock.advance(60)
    assert await world.pipelines.fire_schedules() == 1
    assert await cron_runs(world) == 2


async def test_a_pipeline_without_cron_is_never_scheduled() -> None:
    world = pipeline_world()
    await world.pipelines.create(OPERATOR, draft(stage("build")))

    world.clock.advance(3600)

    assert await world.pipelines.fire_schedules() == 0
