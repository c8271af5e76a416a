"""Pipelines' background work: the scheduler (queue, leases) and cron triggers, and with several replicas
the feed's tail that wakes followers of stages run elsewhere."""

from __future__ import annotations

from worpen_core.pipelines.executor import PipelineExecutor
from worpen_core.pipelines.feed import StageFeed
from worpen_core.pipelines.service import Pipelines
from worpen_core.shared.jobs import Continuous, Job, Periodic


def pipeline_jobs(
    pipelines: Pipelines, executor: PipelineExecutor, *, tick: float = 1.0, feed: StageFeed | None = None
) -> list[Job]:
    """`tick`: seconds between looks at cron schedules (their precision)."""
    jobs: list[Job] = [
        Continuous("pipelines.scheduler", executor.serve, singleton=True),
        Periodic("pipelines.schedules", tick, pipelines.fire_schedules, singleton=True),
    ]
    if feed is not None and feed.tailing:
        jobs.append(Continuous("pipelines.feed", feed.tail))  # every replica: each serves its own followers
    return jobs
