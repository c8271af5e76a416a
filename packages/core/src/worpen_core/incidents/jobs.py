"""Incidents' background work: resolving those whose condition cleared."""

from __future__ import annotations

from worpen_core.incidents.service import Incidents
from worpen_core.shared.jobs import Job, Periodic


def incident_jobs(incidents: Incidents, every: float) -> list[Job]:
    return [Periodic("incidents.auto_resolve", every, incidents.auto_resolve, singleton=True)]
