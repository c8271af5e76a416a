"""Triggers at their edges: a signature no forge would send is refused like any bad one, a pipeline whose
webhook key cannot be opened does not stop the others, and two servers firing the same cron slot start
one run."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Self

import pytest

from tests.fakes.clock import FakeClock
from tests.fakes.pipelines_support import OPERATOR, draft, pipeline_world, stage
from tests.fakes.storage import FakeUnitOfWork, FakeUnitOfWorkFactory
from worpen_core.pipelines.model import Pipeline, RunQuery
from worpen_core.pipelines.service import PushEvent
from worpen_core.shared.errors import Unauthenticated

KEY = "webhook-key-1"
BODY = b"{}"
HTTPS = "https://git.example.com/team/app.git"
PUSH = PushEvent((HTTPS,), "main", "ab" * 20, "alice")


@pytest.mark.parametrize("signature", ["sha256=é", "sha256=" + "ü" * 64])
async def test_a_signature_with_characters_outside_ascii_is_refused(signature: str) -> None:
    world = pipeline_world()
    await world.pipelines.create(OPERATOR, draft(stage("build"), webhook_secret=KEY))

    with pytest.raises(Unauthenticated):
        await world.pipelines.webhook(BODY, signature, PUSH)


async def test_a_webhook_key_that_cannot_be_opened_leaves_the_other_pipelines_working() -> None:
    world = pipeline_world()
    made = await world.pipelines.create(OPERATOR, draft(stage("build"), webhook_secret=KEY))
    async with world.uow() as tx:
        await tx.pipelines.add(
            Pipeline(
                "aaa-old",
                "Old",
                HTTPS,
                "main",
                made.stages,
                made.created_at,
                made.updated_at,
                "ops",
                webhook_secret=b"sealed with the previous key",
            )
        )
        await tx.commit()
    signature = "sha256=" + hmac.new(KEY.encode(), BODY, hashlib.sha256).hexdigest()

    (run,) = await world.pipelines.webhook(BODY, signature, PUSH)

    assert run.pipeline_id == "app"


class SlowUnitOfWork(FakeUnitOfWork):
    """A transaction that lets other tasks run as it begins, like one waiting for a real database."""

    async def __aenter__(self) -> Self:
        await asyncio.sleep(0)
        return await super().__aenter__()


class SlowDatabase(FakeUnitOfWorkFactory):
    def __call__(self) -> FakeUnitOfWork:
        uow = SlowUnitOfWork(self.store)
        self.made.append(uow)
        return uow


async def test_two_servers_firing_the_same_slot_start_one_run() -> None:
    database = SlowDatabase()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = pipeline_world(uow=database, clock=FakeClock(start))
    second = pipeline_world(uow=database, clock=FakeClock(start))
    await first.pipelines.create(OPERATOR, draft(stage("build"), cron="* * * * *"))
    first.clock.advance(60.2)
    second.clock.advance(60.7)

    fired = await asyncio.gather(first.pipelines.fire_schedules(), second.pipelines.fire_schedules())

    assert sum(fired) == 1
    assert len(await first.pipelines.runs(RunQuery())) == 1
