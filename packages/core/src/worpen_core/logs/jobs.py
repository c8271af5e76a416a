"""The central log's background work: retrying writes the database refused, and retention."""

from __future__ import annotations

from worpen_core.logs.service import CentralLog
from worpen_core.shared.jobs import Job, Periodic


def log_jobs(log: CentralLog, *, flush_every: float) -> list[Job]:
    return [
        Periodic("logs.flush", flush_every, log.flush),
        Periodic("logs.prune", log.policy.prune_every, log.prune),
    ]
