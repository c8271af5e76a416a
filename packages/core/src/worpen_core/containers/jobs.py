"""The containers feature's background work: following every engine's events."""

from __future__ import annotations

import asyncio

from worpen_core.containers.service import Containers
from worpen_core.shared.jobs import Continuous, Job


def container_jobs(containers: Containers, *, first_retry: float, max_retry: float) -> list[Job]:
    """Engine events become domain events; a lost engine is retried from `first_retry` seconds, doubling
    up to `max_retry`."""

    async def watch(stopping: asyncio.Event) -> None:
        await containers.watch(stopping, first_retry, max_retry)

    return [Continuous("engines.watch", watch)]
