"""The dashboard's background work: reading the ingestion counters and sampling the services."""

from __future__ import annotations

from worpen_core.dashboard.services import ServiceBoard
from worpen_core.dashboard.throughput import Throughput
from worpen_core.shared.jobs import Job, Periodic


async def _tick(throughput: Throughput) -> None:
    throughput.tick()


def dashboard_jobs(throughput: Throughput, services: ServiceBoard, *, sample_every: float) -> list[Job]:
    return [
        Periodic("throughput", 1.0, lambda: _tick(throughput)),
        Periodic("services", sample_every, services.sample),
    ]
