"""The fleet's background work: offline detection, the telemetry flush, and with replicas sharing the
database, taking in what the others changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from worpen_core.fleet.service import Fleet
from worpen_core.shared.jobs import Job, Periodic


def fleet_jobs(
    fleet: Fleet,
    *,
    sweep_every: float,
    flush_every: float,
    flush: Callable[[], Awaitable[object]] | None = None,
) -> list[Job]:
    """`flush`: the flush step when the caller wraps `fleet.flush` (the API logs dropped samples). The
    sweep runs on the leader only (an agent goes OFFLINE once); every replica flushes what it buffered and,
    when the store is shared, refreshes its view as often as the sweep looks (every replica lists the same
    statuses within about that time)."""
    jobs: list[Job] = [
        Periodic("sweep", sweep_every, fleet.sweep, singleton=True),
        Periodic("flush", flush_every, flush or fleet.flush),
    ]
    if fleet.shared:
        jobs.append(Periodic("refresh", sweep_every, fleet.refresh))
    return jobs
