"""Pipelines place their runs on agents' nodes by the labels the agents connected with."""

from __future__ import annotations

from tests.fakes.agents import ENGINE, FakeAgentLink, agent_world
from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.pipelines_support import (
    OPERATOR,
    EveryMinute,
    FakeSecretCipher,
    FakeSourceFetcher,
    PipelineWorld,
    StageRuntime,
    draft,
    stage,
)
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.agents.model import DOCKER
from worpen_core.agents.ports import AgentLink
from worpen_core.containers.ports import ContainerRuntime
from worpen_core.pipelines.executor import ExecutorSettings, PipelineExecutor
from worpen_core.pipelines.feed import StageFeed
from worpen_core.pipelines.model import RunStatus
from worpen_core.pipelines.service import Pipelines


async def test_a_run_selecting_an_agents_label_runs_on_its_node(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    configured = StageRuntime(ENGINE)
    runtimes: dict[str, StageRuntime] = {ENGINE: configured}

    def stage_runtime(link: AgentLink) -> ContainerRuntime:
        runtimes[link.hello.id] = StageRuntime(link.hello.id)
        return runtimes[link.hello.id]

    world = agent_world(uow, clock, bus, engine=configured, runtime_for=stage_runtime)
    fetcher, cipher, feed = FakeSourceFetcher(), FakeSecretCipher(), StageFeed(1000)
    executor = PipelineExecutor(
        uow,
        world.containers,
        world.fleet,
        fetcher,
        cipher,
        bus,
        clock,
        feed,
        ExecutorSettings(tick_seconds=0.05),
    )
    pipelines = Pipelines(uow, executor, fetcher, cipher, EveryMinute(), world.audit, clock, feed)
    runs = PipelineWorld(uow, clock, bus, runtimes, fetcher, cipher, feed, executor, pipelines)
    await world.agents.attach(FakeAgentLink("bee-001", {DOCKER}, {"gpu": "true"}), "peer")

    await pipelines.create(OPERATOR, draft(stage("train", node_labels={"gpu": "true"})))
    run = await pipelines.trigger(OPERATOR, "app")
    async with runs.serving():
        done = await runs.until(run.id, lambda run: run.status.finished)

    assert done.status is RunStatus.SUCCESS
    assert done.node == "bee-001"
    assert runtimes["bee-001"].started
    assert configured.started == []
