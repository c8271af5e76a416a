"""Requests between replicas for the one driving a pipeline run, on the fake, on a SQLite file and on a
fresh PostgreSQL database: the driver sees the open requests of its runs oldest first, exactly one of
taking and withdrawing wins, and the outcome comes back to the asker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.contract.migrated import MigratedUrl
from tests.fakes.pipeline_requests import FakePipelineRequests
from worpen_core.pipelines.ports import PipelineRequest, PipelineRequests, RequestAction, RequestOutcome
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.pipeline_request_repository import SqlAlchemyPipelineRequests

T0 = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
async def requests(
    request: pytest.FixtureRequest, migrated_url: MigratedUrl
) -> AsyncIterator[PipelineRequests]:
    if request.param == "fake":
        yield FakePipelineRequests()
        return
    engine = create_engine(await migrated_url(request.param, "requests"))
    yield SqlAlchemyPipelineRequests(engine)
    await engine.dispose()


def ask(request_id: str, run_id: str, seconds: float, stage: str | None = None) -> PipelineRequest:
    action: RequestAction = "cancel" if stage is None else "approve"
    return PipelineRequest(request_id, run_id, action, stage, "ops", T0 + timedelta(seconds=seconds))


async def test_the_driver_sees_the_open_requests_of_its_runs_oldest_first(requests: PipelineRequests) -> None:
    await requests.add(ask("q2", "run_a", 2, "deploy"))
    await requests.add(ask("q1", "run_a", 1))
    await requests.add(ask("q3", "run_b", 0))

    assert await requests.open_for(["run_a", "run_c"]) == [
        ask("q1", "run_a", 1),
        ask("q2", "run_a", 2, "deploy"),
    ]
    assert await requests.open_for([]) == []
    assert await requests.take("q1")
    assert not await requests.take("q1")
    assert await requests.open_for(["run_a", "run_b"]) == [
        ask("q3", "run_b", 0),
        ask("q2", "run_a", 2, "deploy"),
    ]


async def test_the_outcome_comes_back_to_the_asker(requests: PipelineRequests) -> None:
    await requests.add(ask("q1", "run_a", 0))
    await requests.add(ask("q2", "run_a", 1, "deploy"))
    assert await requests.take("q1")
    assert await requests.take("q2")
    assert await requests.outcome("q1") is None

    await requests.answer("q1", RequestOutcome(None))
    await requests.answer("q2", RequestOutcome("stage 'deploy' is RUNNING, not waiting for an approval"))

    assert await requests.outcome("q1") == RequestOutcome(None)
    assert await requests.outcome("q2") == RequestOutcome(
        "stage 'deploy' is RUNNING, not waiting for an approval"
    )
    await requests.remove("q1")
    assert await requests.outcome("q1") is None
    assert await requests.outcome("q2") is not None


async def test_a_request_is_taken_or_withdrawn_never_both(requests: PipelineRequests) -> None:
    await requests.add(ask("q1", "run_a", 0))
    await requests.add(ask("q2", "run_a", 1))

    assert await requests.take("q1")
    assert not await requests.withdraw("q1")  # being carried out: the asker waits for its outcome
    assert await requests.withdraw("q2")
    assert not await requests.take("q2")
    assert await requests.open_for(["run_a"]) == []
    await requests.remove("q1")
    await requests.remove("q1")
    assert not await requests.withdraw("q1")
