"""The fleet's background work: offline detection and the telemetry flush."""

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
    """`flush`: the flush step when the caller wraps `fleet.flush` (the API logs dropped samples)."""
    return [
        Periodic("sweep", sweep_every, fleet.sweep),
        Periodic("flush", flush_every, flush or fleet.flush),
    ]
