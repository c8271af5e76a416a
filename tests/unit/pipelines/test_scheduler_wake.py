"""The scheduler never sleeps through a wake: a run queued while it is placing others starts without
waiting for the next tick."""

from __future__ import annotations

import asyncio
from typing import Self

from tests.fakes.pipelines_support import OPERATOR, draft, pipeline_world, stage
from tests.fakes.storage import FakeUnitOfWork, FakeUnitOfWorkFactory
from worpen_core.pipelines.executor import ExecutorSettings
from worpen_core.pipelines.model import RunStatus


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


async def test_runs_queued_one_after_another_all_start_without_waiting_for_a_tick() -> None:
    world = pipeline_world(settings=ExecutorSettings(tick_seconds=30, node_slots=50), uow=SlowDatabase())
    await world.pipelines.create(OPERATOR, draft(stage("build")))

    async with world.serving():
        runs = [await world.pipelines.trigger(OPERATOR, "app") for _ in range(10)]
        done = [await world.until(run.id, lambda run: run.status.finished, seconds=3) for run in runs]

    assert {run.status for run in done} == {RunStatus.SUCCESS}
