"""Pipelines' background work: the scheduler (queue, leases) and cron triggers."""

from __future__ import annotations

from worpen_core.pipelines.executor import PipelineExecutor
from worpen_core.pipelines.service import Pipelines
from worpen_core.shared.jobs import Continuous, Job, Periodic


def pipeline_jobs(pipelines: Pipelines, executor: PipelineExecutor, *, tick: float = 1.0) -> list[Job]:
    """`tick`: seconds between looks at cron schedules (their precision)."""
    return [
        Continuous("pipelines.scheduler", executor.serve, singleton=True),
        Periodic("pipelines.schedules", tick, pipelines.fire_schedules, singleton=True),
    ]
