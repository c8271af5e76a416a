"""Telemetry's background work: the rollup of new samples and the retention of every tier."""

from __future__ import annotations

from worpen_core.shared.jobs import Job, Periodic
from worpen_core.telemetry.service import Telemetry


def telemetry_jobs(telemetry: Telemetry, *, rollup_every: float, retention_every: float) -> list[Job]:
    return [
        Periodic("rollup", rollup_every, telemetry.roll_up, singleton=True),
        Periodic("retention", retention_every, telemetry.forget, singleton=True),
    ]
