"""The containers feature's background work: following every engine's events, and publishing them
once across replicas."""

from __future__ import annotations

import asyncio

from worpen_core.containers.service import SLOT_RENEW_SECONDS, Containers
from worpen_core.shared.jobs import Continuous, Job, Periodic


def container_jobs(containers: Containers, *, first_retry: float, max_retry: float) -> list[Job]:
    """Engine events become domain events; a lost engine is retried from `first_retry` seconds, doubling
    up to `max_retry`."""

    async def watch(stopping: asyncio.Event) -> None:
        await containers.watch(stopping, first_retry, max_retry, configured=False)

    # Every replica follows every engine (its state) and publishes its agents' engines' events; the
    # configured engines' are published by the leader alone, once.
    return [
        Continuous("engines.watch", watch),
        Continuous("engines.publish", containers.publish, singleton=True),
    ]


def session_slot_jobs(containers: Containers) -> list[Job]:
    """With several replicas on one database, every replica renews the terminal session slots it holds."""
    return [Periodic("terminals.slots", SLOT_RENEW_SECONDS, containers.renew_slots)]
