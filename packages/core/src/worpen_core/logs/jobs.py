"""The central log's background work: retrying writes the database refused, retention, and with several
replicas the tail that hands their events and lines to this one's followers."""

from __future__ import annotations

from worpen_core.logs.service import CentralLog
from worpen_core.shared.jobs import Continuous, Job, Periodic


def log_jobs(log: CentralLog, *, flush_every: float) -> list[Job]:
    jobs: list[Job] = [
        Periodic("logs.flush", flush_every, log.flush),
        Periodic("logs.prune", log.policy.prune_every, log.prune, singleton=True),
    ]
    if log.tailing:
        jobs.append(Continuous("logs.tail", log.tail))  # every replica: each serves its own followers
    return jobs
